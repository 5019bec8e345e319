"""NetFlow v9 export packets (RFC 3954) -> templates, options and flow columns.

Packet header (section 5.1): version 9, count, sysUptime (ms), Unix seconds, sequence,
source id (the observation domain). FlowSets (section 5.2-5.3): id 0 holds template
records, 1 options template records, 256 and above data records; 2..255 are reserved.
Options templates (section 6.1) give the scope and option field lists in octets; their
scope fields are scope types (System, Interface, ...), not field types, and are never
read as flow fields. Field types below 128 are the IPFIX elements of the same number.

v9 has no withdrawal: templates expire when the exporter stops refreshing them. Flow
times (FIRST_SWITCHED / LAST_SWITCHED) are uptime milliseconds, placed on the wall
clock with the header's two clocks: Unix ms - sysUptime is when the uptime was zero.
"""

from __future__ import annotations

import struct

from collector.flow_export.datasets import TimeContext
from collector.flow_export.export_state import DecodedFlows, ExportState, MalformedMessage
from collector.flow_export.templates import Template

VERSION = 9
HEADER = struct.Struct("!HHIIII")  # version, count, sysUptime, unix secs, sequence, source id
FLOWSET_HEADER = struct.Struct("!HH")
FIELD = struct.Struct("!HH")
OPTIONS_HEADER = struct.Struct("!HHH")  # template id, option scope length, option length
TEMPLATE_FLOWSET, OPTIONS_TEMPLATE_FLOWSET, FIRST_DATA_FLOWSET = 0, 1, 256
PROTOCOL = "netflow9"


def decode_netflow9(
    datagram: bytes | memoryview, exporter: str, port: int, state: ExportState, now: float
) -> list[DecodedFlows]:
    view = memoryview(datagram)
    if len(view) < HEADER.size:
        raise MalformedMessage("truncated", f"{len(view)} octets is shorter than the NetFlow v9 header")
    version, _count, uptime_ms, unix_s, _sequence, source_id = HEADER.unpack_from(view)
    if version != VERSION:
        raise MalformedMessage("version", f"version {version}, expected {VERSION}")
    times = TimeContext(unix_s * 1000, unix_s * 1000 - uptime_ms)
    decoded: list[DecodedFlows] = []
    offset, end = HEADER.size, len(view)
    while offset < end:
        if end - offset < FLOWSET_HEADER.size:
            raise MalformedMessage("set-length", "a flowset header runs past the end of the packet")
        flowset_id, flowset_length = FLOWSET_HEADER.unpack_from(view, offset)
        if flowset_length < FLOWSET_HEADER.size or offset + flowset_length > end:
            raise MalformedMessage(
                "set-length", f"flowset {flowset_id} says {flowset_length} octets, {end - offset} left"
            )
        body = view[offset + FLOWSET_HEADER.size : offset + flowset_length]
        if flowset_id >= FIRST_DATA_FLOWSET:
            decoded.extend(state.data_set(PROTOCOL, (exporter, port, source_id, flowset_id), body, times, now))
        elif flowset_id == TEMPLATE_FLOWSET:
            decoded.extend(_templates(body, exporter, port, source_id, state, now))
        elif flowset_id == OPTIONS_TEMPLATE_FLOWSET:
            decoded.extend(_options_templates(body, exporter, port, source_id, state, now))
        else:
            raise MalformedMessage("set-id", f"flowset id {flowset_id} is reserved")
        offset += flowset_length
    return decoded


def _fields(body: memoryview, offset: int, count: int, template_id: int) -> tuple[tuple[int, int, int], ...]:
    if len(body) - offset < count * FIELD.size:
        raise MalformedMessage("template", f"template {template_id} cut short")
    fields = tuple((t, n, 0) for t, n in (FIELD.unpack_from(body, offset + i * FIELD.size) for i in range(count)))
    if any(n == 0 or n == 0xFFFF for _, n, _ in fields):  # v9 has no variable-length fields
        raise MalformedMessage("template", f"template {template_id} has a field of length 0 or 65535")
    return fields


def _templates(
    body: memoryview, exporter: str, port: int, domain: int, state: ExportState, now: float
) -> list[DecodedFlows]:
    decoded: list[DecodedFlows] = []
    offset = 0
    while len(body) - offset >= 4:  # less than a record header: padding
        template_id, field_count = FIELD.unpack_from(body, offset)
        offset += 4
        if template_id < FIRST_DATA_FLOWSET or field_count == 0:
            raise MalformedMessage("template", f"template id {template_id} with {field_count} fields")
        fields = _fields(body, offset, field_count, template_id)
        offset += field_count * FIELD.size
        decoded.extend(
            state.learn_template(PROTOCOL, (exporter, port, domain, template_id), Template(template_id, fields), now)
        )
    return decoded


def _options_templates(
    body: memoryview, exporter: str, port: int, domain: int, state: ExportState, now: float
) -> list[DecodedFlows]:
    decoded: list[DecodedFlows] = []
    offset = 0
    while len(body) - offset >= OPTIONS_HEADER.size + FIELD.size:  # else padding
        template_id, scope_length, option_length = OPTIONS_HEADER.unpack_from(body, offset)
        offset += OPTIONS_HEADER.size
        if template_id < FIRST_DATA_FLOWSET or scope_length % 4 or option_length % 4 or scope_length == 0:
            raise MalformedMessage(
                "template",
                f"options template {template_id} with scope length {scope_length} and option length {option_length}",
            )
        scope_count, option_count = scope_length // 4, option_length // 4
        fields = _fields(body, offset, scope_count + option_count, template_id)
        offset += scope_length + option_length
        template = Template(template_id, fields, scope_count, scope_elements=False)
        decoded.extend(state.learn_template(PROTOCOL, (exporter, port, domain, template_id), template, now))
    return decoded
