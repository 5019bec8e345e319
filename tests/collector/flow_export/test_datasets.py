"""Data sets decoded into flow columns: fixed layouts read in one pass, reduced-size and
enterprise fields, padding, variable-length records, options records and malformed sets."""

from __future__ import annotations

import socket
import struct

import pytest

from collector.flow_export import information_elements as ie
from collector.flow_export.datasets import (
    MalformedSet,
    TimeContext,
    compile_layout,
    decode_columns,
    decode_element_records,
    split_segments,
)
from collector.flow_export.templates import VARIABLE_LENGTH, Template

EXPORT_MS = 1_800_000_000_000
TIMES = TimeContext(EXPORT_MS, None)
V6_A, V6_B = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(socket.AF_INET6, "2001:db8::2")


def test_a_fixed_template_reads_wanted_fields_and_skips_enterprise_and_unknown_ones():
    template = Template(
        256, ((27, 16, 0), (28, 16, 0), (1, 4, 0), (9999, 6, 0), (1, 8, 32473), (5, 1, 0), (2, 3, 0), (61, 1, 0))
    )
    record = (
        V6_A
        + V6_B
        + struct.pack("!I", 1500)
        + bytes(6)
        + bytes(8)
        + bytes([26 << 2 | 1])
        + (70_000).to_bytes(3, "big")
        + bytes([1])
    )
    columns = decode_columns(template, record * 2 + bytes(3), TIMES)  # 3 octets of set padding
    assert len(columns) == 2
    assert (columns.source, columns.destination) == ([V6_A] * 2, [V6_B] * 2)
    assert (columns.octets, columns.packets, columns.dscp) == ([1500] * 2, [70_000] * 2, [26] * 2)
    assert columns.direction == ["out", "out"]
    assert compile_layout(template).struct.size == len(record)


def test_missing_fields_take_neutral_values_and_times_the_export_time():
    template = Template(300, ((8, 4, 0), (12, 4, 0), (4, 1, 0), (21, 4, 0)))
    record = socket.inet_aton("192.0.2.1") + socket.inet_aton("198.51.100.7") + bytes([6]) + struct.pack("!I", 5)
    columns = decode_columns(template, record, TIMES)
    assert columns.source == [ie.IPV4_MAPPED_PREFIX + socket.inet_aton("192.0.2.1")]
    assert (columns.protocol, columns.source_port, columns.dscp, columns.flow_label) == ([6], [0], [0], [0])
    assert columns.start_ms == [EXPORT_MS]  # no start field
    assert columns.end_ms == [EXPORT_MS]  # uptime with no known origin
    assert columns.direction == ["unknown"] and columns.segments is None and columns.sampler is None
    with_origin = decode_columns(template, record, TimeContext(EXPORT_MS, EXPORT_MS - 10_000))
    assert with_origin.end_ms == [EXPORT_MS - 10_000 + 5]


def test_variable_length_records_are_walked_one_by_one_with_their_segment_lists():
    template = Template(400, ((27, 16, 0), (497, VARIABLE_LENGTH, 0), (1, 2, 0)))
    segments = V6_B + V6_A
    short = V6_A + bytes([32]) + segments + struct.pack("!H", 10)
    long_ = V6_A + bytes([255]) + struct.pack("!H", 33) + segments + b"\x00" + struct.pack("!H", 20)
    columns = decode_columns(template, short + long_, TIMES)
    assert columns.octets == [10, 20]
    assert columns.segments == [(V6_B, V6_A), (V6_B, V6_A)]  # a partial 17th octet is dropped
    assert compile_layout(template).struct is None


@pytest.mark.parametrize(
    "data",
    [
        V6_A + bytes([40]) + bytes(20),  # the field claims more than the set holds
        V6_A + bytes([255, 0]),  # the 3-octet length is cut
    ],
)
def test_a_record_running_past_its_set_is_malformed(data):
    template = Template(400, ((27, 16, 0), (497, VARIABLE_LENGTH, 0)))
    with pytest.raises(MalformedSet) as caught:
        decode_columns(template, data, TIMES)
    assert caught.value.kind == "record-length"


def test_a_template_of_empty_fields_is_malformed_not_an_endless_loop():
    with pytest.raises(MalformedSet, match="no length") as caught:
        decode_columns(Template(500, ((1, 0, 0),)), b"\x00" * 8, TIMES)
    assert caught.value.kind == "template"


def test_options_records_keep_netflow9_scope_types_apart_from_elements():
    template = Template(
        257, ((1, 4, 0), (ie.SAMPLING_INTERVAL, 4, 0), (ie.SAMPLER_ID, 1, 0)), scope_count=1, scope_elements=False
    )
    records = decode_element_records(template, struct.pack("!IIB", 7, 100, 3) * 2)
    assert records == [{-1: 7, ie.SAMPLING_INTERVAL: 100, ie.SAMPLER_ID: 3}] * 2


def test_segment_lists_split_into_whole_segments():
    assert split_segments(V6_A + V6_B + b"\x01") == (V6_A, V6_B)
    assert split_segments(0) == ()
