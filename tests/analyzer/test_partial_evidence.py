"""A partition's epoch on the wire: every field comes back as the partition built it, and a
message that is not one (indices beyond its table, more lost than sent, delays that are not
finite, an epoch end off the intervals) is refused with the field named; the outbox keeps
epochs in order until sent and drops the oldest beyond its bound, counted."""

from __future__ import annotations

import json
import zlib

import pytest

from analyzer.partial_evidence import MAX_INFLATED, MAX_ROUTE, EvidenceOutbox, PartitionEvidence
from analyzer.partials import MalformedReport
from analyzer.rootcause.model import Epoch, HostHealth, PathEvidence

W = 10_000_000_000
AT = 170_000_005 * W
FULL = PathEvidence(
    path_id="cnty1a>core/video/stamp",
    source="cnty1a",
    target="core",
    target_site="core",
    slice="video",
    forward=("host:cnty1a", "cnty1a", "cnty1a>city1a", "city1a", "city1a>core", "core", "service:core"),
    reverse=("core", "core>city1a", "city1a", "city1a>cnty1a", "cnty1a"),
    sent=200,
    lost=30,
    forward_lost=20,
    reverse_lost=10,
    delay_s=0.004123456789,
    baseline_delay_s=0.0031,
    jitter_s=0.00019,
    baseline_jitter_s=1e-5,
    path_changed=True,
    delay_delta_s=-0.0007,
    previous_forward=("host:cnty1a", "cnty1a", "cnty1a>city1b", "city1b", "city1b>core", "core", "service:core"),
    previous_reverse=("core", "core>city1b", "city1b", "city1b>cnty1a", "cnty1a"),
)
BARE = PathEvidence(
    "cnty9>x/egov/icmp", "cnty9", "x", None, "egov", ("host:cnty9", "cnty9", "cnty9>x", "x"), None, sent=0, lost=0
)
EPOCH = Epoch((FULL, BARE), (HostHealth("cnty1a", True), HostHealth("cnty9", False, "no shipment for 31.0 s")), AT)


def fields() -> dict:
    return json.loads(zlib.decompress(PartitionEvidence.of(EPOCH, 1, 2, W).encode()))


def deflated(data: dict | bytes) -> bytes:
    return zlib.compress(data if isinstance(data, bytes) else json.dumps(data).encode())


def message(**changes) -> bytes:
    return deflated(fields() | changes)


def test_an_epoch_comes_back_field_for_field_with_each_name_sent_once():
    data = PartitionEvidence.of(EPOCH, 1, 2, W).encode()
    back = PartitionEvidence.decode(data)
    assert back.epoch() == EPOCH
    assert (back.partition, back.partitions, back.interval_ns, back.at_ns) == (1, 2, W, AT)
    assert len(back.names) == len(set(back.names))
    assert zlib.decompress(data).count(b'"city1a>cnty1a"') == 1  # once in the table, the routes hold indices


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"partition": 2}, "partition 2 of 2"),
        ({"at_ns": AT + 1}, "interval's end"),
        ({"names": ["a"]}, "beyond the table"),
        ({"hosts": [[99, True, ""]]}, "beyond the table"),
        ({"partitions": 0}, "partitions"),
    ],
)
def test_a_message_that_does_not_add_up_is_refused_naming_why(change, words):
    with pytest.raises(MalformedReport, match=words):
        PartitionEvidence.decode(message(**change))


def row_changed(position: int, value) -> bytes:
    data = fields()
    data["paths"][0][position] = value
    return deflated(data)


@pytest.mark.parametrize(
    ("position", "value", "where"),
    [
        (8, 201, "more lost than sent"),  # lost
        (9, 500, "more lost than sent"),  # forward_lost
        (7, -1, "paths.0.7"),  # sent
        (11, -0.5, "paths.0.11"),  # delay
        (11, 1e300, "paths.0.11"),
        (16, 1e9, "paths.0.16"),  # delay step
        (5, list(range(MAX_ROUTE + 1)), "paths.0.5"),
        (0, -1, "paths.0.0"),
    ],
)
def test_a_path_row_out_of_bounds_is_refused(position, value, where):
    with pytest.raises(MalformedReport, match=where):
        PartitionEvidence.decode(row_changed(position, value))


def test_not_deflated_truncated_too_large_not_json_and_not_finite_numbers_are_refused():
    with pytest.raises(MalformedReport, match="not deflated"):
        PartitionEvidence.decode(b'{"partition": 0}')
    with pytest.raises(MalformedReport, match="truncated"):
        PartitionEvidence.decode(message()[:-8])
    with pytest.raises(MalformedReport, match="beyond"):
        PartitionEvidence.decode(zlib.compress(b" " * (MAX_INFLATED + 1)))
    with pytest.raises(MalformedReport):
        PartitionEvidence.decode(deflated(b"\xff not json"))
    with pytest.raises(MalformedReport, match=r"paths\.0\.12"):
        PartitionEvidence.decode(deflated(zlib.decompress(message()).replace(b"0.0031", b"NaN")))


def test_the_outbox_keeps_epochs_in_order_until_sent_and_drops_the_oldest_beyond_its_bound():
    outbox = EvidenceOutbox(1, 2, W, max_epochs=2)
    assert outbox(EPOCH) == ()  # no diagnoses in a partition
    later = Epoch(EPOCH.paths, EPOCH.hosts, AT + W)
    outbox(later)
    assert outbox.take()[0] == AT and len(outbox) == 2
    outbox.sent(AT)
    at_ns, data = outbox.take()
    assert at_ns == AT + W and PartitionEvidence.decode(data).epoch() == later
    outbox(Epoch((), (), AT + 2 * W))
    outbox(Epoch((), (), AT + 3 * W))
    assert outbox.dropped == 1 and [outbox.take()[0]] == [AT + 2 * W]
    assert outbox.bytes_total > 0
    with pytest.raises(ValueError, match="partition 2 of 2"):
        EvidenceOutbox(2, 2, W)
