"""The stream definition: file storage, the limits chosen, every site's subjects."""

from __future__ import annotations

import pytest
from nats.js.api import DiscardPolicy, StorageType

from collector.bus.stream import STREAM_NAME, StreamLimits, replicas_for, site_bytes_per_hour, stream_config


def test_the_stream_keeps_every_kind_on_file_within_its_limits():
    config = stream_config()
    assert config.name == STREAM_NAME
    assert config.subjects == ["xnet.windows.*", "xnet.observations.*", "xnet.health.*"]
    assert config.storage is StorageType.FILE and config.discard is DiscardPolicy.OLD
    assert (config.max_age, config.duplicate_window) == (86_400.0, 600.0)
    assert config.max_bytes == 10 << 30 and config.max_msg_size == 8 << 20


def test_limits_can_be_chosen():
    config = stream_config(StreamLimits(max_age_s=60, max_bytes=1 << 20, duplicate_window_s=5, replicas=3))
    assert (config.max_age, config.max_bytes, config.duplicate_window, config.num_replicas) == (60, 1 << 20, 5, 3)
    assert config.as_dict()["max_age"] == 60 * 10**9  # nanoseconds on the wire


def test_a_bus_of_three_or_more_servers_replicates_the_stream_three_times():
    assert [replicas_for(n) for n in (1, 2, 3, 5)] == [1, 1, 3, 3]


def test_limits_sized_for_the_sites_hold_what_their_age_promises():
    national = StreamLimits.for_sites(2800, hours=24, window_s=10)
    assert national.max_age_s == 86_400
    assert 450e9 < national.max_bytes < 500e9  # ~7.2 MB a site an hour at 10 s windows
    assert StreamLimits.for_sites(2800, hours=1, window_s=1).max_bytes == 2800 * site_bytes_per_hour(1.0)
    assert StreamLimits().max_bytes < StreamLimits.for_sites(70, hours=24).max_bytes  # the default: ~60 sites
    with pytest.raises(ValueError, match="positive"):
        StreamLimits.for_sites(0)
