"""Fuzzing: hypothesis-made and truncated IPFIX, NetFlow v9 and sFlow datagrams never raise
out of the receiver; every datagram that cannot be decoded is counted as malformed."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.flow_export.receiver import FlowReceiver
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    ipfix_message,
    ipfix_template_set,
    record,
    sflow_datagram,
    sflow_flow_sample,
    v6_values,
    v9_packet,
    v9_template_flowset,
)

EXPORTER = "2001:db8::e"
ROW = record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2"))
FRAME = (
    bytes.fromhex("020000000002020000000001 86dd".replace(" ", ""))
    + bytes.fromhex("68812345002c1140" + "20010db8000000000000000000000001" + "20010db8000000000000000000000002")
    + bytes(44)
)
VALID = {
    "ipfix": ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, [ROW, ROW])]),
    "netflow9": v9_packet([v9_template_flowset(256, V6_FIELDS), data_set(256, [ROW])]),
    "sflow": sflow_datagram([sflow_flow_sample([FRAME], rate=10)]),
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def malformed_total(receiver: FlowReceiver) -> int:
    return sum(receiver.malformed.values())


def test_every_truncation_of_a_valid_datagram_is_counted_never_raised():
    for protocol, datagram in VALID.items():
        receiver = FlowReceiver()
        assert receiver.handle_datagram(datagram, EXPORTER, 4739) > 0
        for cut in range(len(datagram)):
            before = malformed_total(receiver)
            records = receiver.handle_datagram(datagram[:cut], EXPORTER, 4739)
            # a cut on a set boundary of v9 (no length in its header) may decode fewer records;
            # anything else must be counted
            assert records > 0 or malformed_total(receiver) == before + 1 or (protocol == "netflow9"), (protocol, cut)
        assert "internal" not in {kind for _, kind in receiver.malformed}, receiver.malformed


@FUZZ
@given(st.sampled_from(sorted(VALID)), st.data())
def test_mutated_datagrams_never_raise(protocol, data):
    original = bytearray(VALID[protocol])
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    receiver = FlowReceiver()
    receiver.handle_datagram(bytes(original), EXPORTER, 4739)
    assert not any(kind == "internal" for _, kind in receiver.malformed), receiver.malformed


@FUZZ
@given(st.sampled_from([b"\x00\x0a", b"\x00\x09", b"\x00\x00\x00\x05"]), st.binary(max_size=300))
def test_random_bodies_after_a_valid_version_never_raise(version, body):
    receiver = FlowReceiver()
    records = receiver.handle_datagram(version + body, EXPORTER, 4739)
    assert records >= 0
    assert not any(kind == "internal" for _, kind in receiver.malformed), receiver.malformed


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 600), st.sampled_from([1, 2, 3, 4, 5, 8, 16, 0xFFFF])), min_size=1, max_size=12),
    st.binary(max_size=200),
)
def test_arbitrary_templates_with_arbitrary_data_never_raise(fields, payload):
    receiver = FlowReceiver()
    message = ipfix_message([ipfix_template_set(300, fields), data_set(300, [payload])])
    receiver.handle_datagram(message, EXPORTER, 4739)
    assert not any(kind == "internal" for _, kind in receiver.malformed), receiver.malformed
