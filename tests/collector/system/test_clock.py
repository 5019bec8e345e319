"""The clock's self-assessment as it goes into STAMP Error Estimates."""

from __future__ import annotations

import pytest

from collector.system.clock import (
    UNSYNCHRONISED_ERROR_S,
    ClockStatus,
    read_clock_status,
    shared_host_clock,
    unsynchronised,
)
from collector.wire.stamp import TimestampFormat
from collector.wire.stamp_tlv import SyncSource


def test_the_kernels_answer_is_either_a_disciplined_clock_or_the_free_running_one():
    status = read_clock_status()
    if status.synchronized:
        assert 0 < status.error_s < 16.0 and status.sync_source == SyncSource.NTP
    else:
        assert status == unsynchronised()


def test_a_free_running_clock_admits_a_second_and_never_claims_sync():
    status = unsynchronised()
    estimate = status.error_estimate()
    assert (status.error_s, status.sync_source) == (UNSYNCHRONISED_ERROR_S, SyncSource.LOCAL_FREE_RUNNING)
    assert not estimate.synchronized and estimate.seconds == pytest.approx(1.0, rel=0.01)


def test_ends_sharing_one_kernel_clock_are_synchronised_to_software_timestamping_error():
    estimate = shared_host_clock().error_estimate(TimestampFormat.PTP)
    assert estimate.synchronized and estimate.timestamp_format is TimestampFormat.PTP
    assert estimate.seconds == pytest.approx(1e-6, rel=0.01)


@pytest.mark.parametrize("error_s", [1e-9, 2.5e-5, 0.003, 1.0])
def test_the_error_estimate_never_understates_the_clocks_error_by_more_than_its_resolution(error_s):
    estimate = ClockStatus(True, error_s, SyncSource.NTP).error_estimate()
    assert estimate.seconds >= error_s * 0.99 and estimate.seconds <= error_s * 1.01 + 2**-32
