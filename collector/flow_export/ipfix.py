"""IPFIX messages (RFC 7011) -> templates, options and flow columns.

Message header (section 3.1): version 10, length, export time (Unix seconds), sequence
number, observation domain id. Then sets (section 3.3): set id 2 holds template records,
3 options template records, 256 and above data records of the template with that id;
1 and 4..255 are reserved and refused. Template fields (section 3.2) are element id,
length, and, when the id's top bit is set, an enterprise number.

Withdrawals (section 8.1) are template records with no fields: one template, or with
template id 2 (or 3 in an options template set) every data (options) template of the
domain. Nothing in a datagram is trusted: every length is checked against what is there,
and the first violation raises `MalformedMessage` with a kind for the metric.

Flow times come from flowStart/EndSeconds/Milliseconds/Microseconds/Nanoseconds, or from
flowStart/EndSysUpTime counted from the systemInitTimeMilliseconds an options record gave
(softflowd sends it); without it, such flows are given the message's export time.
"""

from __future__ import annotations

import struct

from collector.flow_export.datasets import TimeContext
from collector.flow_export.export_state import DecodedFlows, ExportState, MalformedMessage
from collector.flow_export.templates import Template

VERSION = 10
HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence, observation domain
SET_HEADER = struct.Struct("!HH")
FIELD = struct.Struct("!HH")
ENTERPRISE = struct.Struct("!I")
TEMPLATE_SET, OPTIONS_TEMPLATE_SET, FIRST_DATA_SET = 2, 3, 256
ENTERPRISE_BIT = 0x8000
PROTOCOL = "ipfix"


def decode_ipfix(
    datagram: bytes | memoryview, exporter: str, port: int, state: ExportState, now: float
) -> list[DecodedFlows]:
    """Every data set of one message, decoded; templates and options go into `state`."""
    view = memoryview(datagram)
    if len(view) < HEADER.size:
        raise MalformedMessage("truncated", f"{len(view)} octets is shorter than the IPFIX header")
    version, length, export_s, _sequence, domain = HEADER.unpack_from(view)
    if version != VERSION:
        raise MalformedMessage("version", f"version {version}, expected {VERSION}")
    if length > len(view):
        raise MalformedMessage("truncated", f"header says {length} octets, datagram has {len(view)}")
    if length < len(view):
        raise MalformedMessage("length", f"header says {length} octets, datagram has {len(view)}")
    times = TimeContext(export_s * 1000, None)
    decoded: list[DecodedFlows] = []
    offset = HEADER.size
    while offset < length:
        if length - offset < SET_HEADER.size:
            raise MalformedMessage("set-length", "a set header runs past the end of the message")
        set_id, set_length = SET_HEADER.unpack_from(view, offset)
        if set_length < SET_HEADER.size or offset + set_length > length:
            raise MalformedMessage("set-length", f"set {set_id} says {set_length} octets, {length - offset} left")
        body = view[offset + SET_HEADER.size : offset + set_length]
        if set_id >= FIRST_DATA_SET:
            decoded.extend(state.data_set(PROTOCOL, (exporter, port, domain, set_id), body, times, now))
        elif set_id in (TEMPLATE_SET, OPTIONS_TEMPLATE_SET):
            decoded.extend(_template_set(body, set_id == OPTIONS_TEMPLATE_SET, exporter, port, domain, state, now))
        else:
            raise MalformedMessage("set-id", f"set id {set_id} is reserved")
        offset += set_length
    return decoded


def _template_set(
    body: memoryview, options: bool, exporter: str, port: int, domain: int, state: ExportState, now: float
) -> list[DecodedFlows]:
    decoded: list[DecodedFlows] = []
    offset, end = 0, len(body)
    while end - offset >= 4:  # less than a record header left: padding (section 3.3.1)
        template_id, field_count = FIELD.unpack_from(body, offset)
        offset += 4
        if field_count == 0:  # a withdrawal
            set_id = OPTIONS_TEMPLATE_SET if options else TEMPLATE_SET
            if template_id == set_id:
                state.templates.withdraw_all(exporter, port, domain, options=options)
            elif template_id >= FIRST_DATA_SET:
                state.templates.withdraw((exporter, port, domain, template_id))
            else:
                raise MalformedMessage("template", f"withdrawal of template id {template_id}")
            continue
        if template_id < FIRST_DATA_SET:
            raise MalformedMessage("template", f"template id {template_id} is below 256")
        scope_count = 0
        if options:
            if end - offset < 2:
                raise MalformedMessage("template", "options template record cut short")
            scope_count = int.from_bytes(body[offset : offset + 2], "big")
            offset += 2
            if not 0 < scope_count <= field_count:
                raise MalformedMessage("template", f"scope field count {scope_count} of {field_count} fields")
        fields = []
        for _ in range(field_count):
            if end - offset < FIELD.size:
                raise MalformedMessage("template", f"template {template_id} cut short")
            element, field_length = FIELD.unpack_from(body, offset)
            offset += FIELD.size
            enterprise = 0
            if element & ENTERPRISE_BIT:
                if end - offset < ENTERPRISE.size:
                    raise MalformedMessage("template", f"template {template_id} cut short")
                (enterprise,) = ENTERPRISE.unpack_from(body, offset)
                offset += ENTERPRISE.size
                element &= ~ENTERPRISE_BIT
            if field_length == 0:
                raise MalformedMessage("template", f"field {element} of template {template_id} has length 0")
            fields.append((element, field_length, enterprise))
        template = Template(template_id, tuple(fields), scope_count, scope_elements=True)
        decoded.extend(state.learn_template(PROTOCOL, (exporter, port, domain, template_id), template, now))
    return decoded
