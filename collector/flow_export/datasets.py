"""Data sets -> flow columns: the decoding shared by IPFIX and NetFlow v9.

Speed comes from decoding a whole data set at once, not record by record. For a template
whose fields all have fixed lengths (what softflowd, pmacct and routers send) we compile,
once per distinct field list, a `struct.Struct` that reads the wanted fields and skips the
rest (`NNx`), and `iter_unpack` walks every record of the set in C; `zip(*rows)` turns the
rows into columns, and each column is normalised with one list comprehension (IPv4 into
IPv4-mapped IPv6, the TOS octet into a DSCP, times into Unix milliseconds). Templates with
variable-length fields (IE 497, the SRv6 segment list) are walked record by record.

Options data records (rare: sampling parameters, a few per minute) are decoded into one
dict per record by the record-by-record walker.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from collector.flow_export import information_elements as ie
from collector.flow_export.templates import VARIABLE_LENGTH, Template

_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_DIRECTIONS = {0: "in", 1: "out"}
_NO_ADDRESS = bytes(16)


class MalformedSet(ValueError):
    """A data set that does not fit its template; `kind` is the label of
    xnet_malformed_packets_total. (MalformedMessage, for whole datagrams, derives from it.)"""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class TimeContext:
    """What turns a message's relative times into wall-clock milliseconds."""

    export_ms: int  # the message's export time
    sysuptime_base_ms: int | None  # wall-clock ms at which the exporter's uptime was 0, if known


@dataclass(frozen=True, slots=True)
class FlowColumns:
    """The flow records of one data set, one list per field (all of equal length)."""

    source: list[bytes]  # 16 octets, IPv4 as IPv4-mapped
    destination: list[bytes]
    protocol: list[int]
    source_port: list[int]
    destination_port: list[int]
    dscp: list[int]
    flow_label: list[int]
    packets: list[int]  # as exported: not yet scaled by sampling
    octets: list[int]
    start_ms: list[int]
    end_ms: list[int]
    direction: list[str]  # "in" | "out" | "unknown"
    segments: list[tuple[bytes, ...]] | None  # SRv6 segment lists, when the template has IE 497
    sampler: list[int] | None  # samplerId / selectorId per record, when the template has one
    sampling_interval: list[int] | None  # IE 34 per record, when data records carry it themselves
    active_sid: list[bytes | None] | None = None  # sFlow: from the sampled packet's SRH
    slice_id: list[int | None] | None = None  # sFlow: from the sampled packet's slice-ID option

    def __len__(self) -> int:
        return len(self.octets)


@dataclass(frozen=True, slots=True)
class Layout:
    """A compiled template: how to read its data records."""

    struct: struct.Struct | None  # None: variable-length fields, walk record by record
    columns: tuple[tuple[str, int], ...]  # (column, element) per unpacked value (fixed layouts)
    chosen: tuple[tuple[str, int], ...]  # (column, element) the template feeds
    record_length: int  # fixed layouts; the minimum for variable ones
    odd_integers: frozenset[str]  # columns sent in 3, 5, 6 or 7 octets: unpacked as bytes


@lru_cache(maxsize=4096)
def compile_layout(template: Template) -> Layout:
    usable = [
        (e, n)
        for i, (e, n, enterprise) in enumerate(template.fields)
        if enterprise == 0 and (template.scope_elements or i >= template.scope_count)
    ]
    chosen = ie.column_elements([e for e, _ in usable])
    wanted = {element for element in chosen.values()}
    if not template.fixed_length:
        return Layout(None, (), tuple(chosen.items()), template.minimum_record_length, frozenset())
    codes, columns, odd = ["!"], [], set()
    for index, (element, length, enterprise) in enumerate(template.fields):
        feeds = enterprise == 0 and element in wanted and (template.scope_elements or index >= template.scope_count)
        if feeds and element in wanted:
            wanted.discard(element)  # the first occurrence of an element is the one read
            column = ie.COLUMN_OF[element]
            if element in ie.OCTET_ARRAYS or length not in _INT_CODES:
                codes.append(f"{length}s")
                if element not in ie.OCTET_ARRAYS:
                    odd.add(column)
            else:
                codes.append(_INT_CODES[length])
            columns.append((column, element))
        else:
            codes.append(f"{length}x")
    layout_struct = struct.Struct("".join(codes))
    return Layout(layout_struct, tuple(columns), tuple(chosen.items()), layout_struct.size, frozenset(odd))


def decode_columns(template: Template, data: bytes | memoryview, times: TimeContext) -> FlowColumns:
    """Every data record of a set (padding after the last record ignored, RFC 7011 3.3.1)."""
    layout = compile_layout(template)
    if layout.struct is not None:
        if layout.record_length == 0:
            raise MalformedSet("template", f"template {template.template_id} has records of no length")
        count = len(data) // layout.record_length
        raw: dict[str, list] = {}
        if count and layout.columns:
            rows = layout.struct.iter_unpack(data[: count * layout.record_length])
            for (column, _), values in zip(layout.columns, zip(*rows)):
                raw[column] = list(values)
        for column in layout.odd_integers & raw.keys():
            raw[column] = [int.from_bytes(v, "big") for v in raw[column]]
    else:
        records = decode_element_records(template, data)
        count = len(records)
        raw = {column: [r.get(element, 0) for r in records] for column, element in layout.chosen}
    return _normalise(raw, dict(layout.chosen), count, times)


def _normalise(raw: dict[str, list], element_of: dict[str, int], count: int, times: TimeContext) -> FlowColumns:
    def ints(column: str) -> list[int]:
        return raw[column] if column in raw else [0] * count

    def addresses(column: str) -> list[bytes]:
        values = raw.get(column)
        if values is None:
            return [_NO_ADDRESS] * count
        if ie.ADDRESS_LENGTHS.get(element_of[column]) == 4:
            prefix = ie.IPV4_MAPPED_PREFIX
            return [prefix + a for a in values]
        return values

    def stamps(column: str) -> list[int]:
        values = raw.get(column)
        if values is None:
            return [times.export_ms] * count
        element = element_of[column]
        if element in (ie.FLOW_START_MILLISECONDS, ie.FLOW_END_MILLISECONDS):
            return values
        base = times.sysuptime_base_ms
        if element in (ie.FLOW_START_SYS_UP_TIME, ie.FLOW_END_SYS_UP_TIME) and base is None:
            return [times.export_ms] * count  # uptime with no known origin: the export time
        return [ie.time_to_ms(element, v, base) for v in values]

    dscp = raw.get("dscp")
    if dscp is None:
        dscp = [0] * count
    elif element_of["dscp"] == ie.IP_CLASS_OF_SERVICE:
        dscp = [(v >> 2) & 63 for v in dscp]
    else:
        dscp = [v & 63 for v in dscp]
    direction = raw.get("direction")
    segments = raw.get("segments")
    return FlowColumns(
        source=addresses("source"),
        destination=addresses("destination"),
        protocol=ints("protocol"),
        source_port=ints("source_port"),
        destination_port=ints("destination_port"),
        dscp=dscp,
        flow_label=[v & 0xFFFFF for v in raw["flow_label"]] if "flow_label" in raw else [0] * count,
        packets=ints("packets"),
        octets=ints("octets"),
        start_ms=stamps("start"),
        end_ms=stamps("end"),
        direction=[_DIRECTIONS.get(v, "unknown") for v in direction] if direction is not None else ["unknown"] * count,
        segments=[split_segments(s) for s in segments] if segments is not None else None,
        sampler=raw.get("sampler"),
        sampling_interval=raw.get("sampling_interval"),
    )


def split_segments(octets: bytes | int) -> tuple[bytes, ...]:
    """IE 497's octet array -> 16-octet segments in SRH order (a partial tail is dropped)."""
    if not isinstance(octets, bytes | bytearray):
        return ()
    return tuple(bytes(octets[i : i + 16]) for i in range(0, len(octets) - 15, 16))


def decode_element_records(template: Template, data: bytes | memoryview) -> list[dict[int, int | bytes]]:
    """Records as {element: value} (integers, or bytes for octet arrays), walked one by one.

    Scope fields of NetFlow v9 options templates are scope types, not elements: they are
    kept under the negative of their type so they never collide with an element."""
    view = memoryview(data)
    records: list[dict[int, int | bytes]] = []
    offset, end = 0, len(view)
    minimum = max(template.minimum_record_length, 1)
    while end - offset >= minimum:
        record: dict[int, int | bytes] = {}
        for index, (element, length, enterprise) in enumerate(template.fields):
            if length == VARIABLE_LENGTH:  # RFC 7011 section 7: 1 octet, or 255 then 2 octets
                if offset >= end:
                    raise MalformedSet("record-length", "variable-length field runs past its set")
                length = view[offset]
                offset += 1
                if length == 255:
                    if offset + 2 > end:
                        raise MalformedSet("record-length", "variable-length field runs past its set")
                    length = int.from_bytes(view[offset : offset + 2], "big")
                    offset += 2
            if offset + length > end:
                raise MalformedSet("record-length", "record runs past the end of its set")
            if enterprise == 0:
                value = bytes(view[offset : offset + length])
                key = element if template.scope_elements or index >= template.scope_count else -element
                if key not in record:
                    record[key] = value if element in ie.OCTET_ARRAYS and key > 0 else int.from_bytes(value, "big")
            offset += length
        records.append(record)
    return records
