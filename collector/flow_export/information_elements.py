"""The Information Elements the flow receiver reads, and how each becomes a flow column.

IPFIX (RFC 7011, IANA "IPFIX Information Elements") and NetFlow v9 (RFC 3954 section 8)
share the numbers below 128, so one table serves both. Only the elements listed here are
decoded; every other field of a template is skipped by its length (enterprise-specific
ones included), which is what keeps decoding cheap.

Each element is read into one *column* of a decoded data set (`COLUMN_OF`): several
elements may feed one column (octetDeltaCount or octetTotalCount -> "octets"); when a
template carries more than one, the earlier one in `PREFERENCE` wins. Integers may be sent
in fewer octets than their type (reduced-size encoding, RFC 7011 section 6.2): any length
from 1 to 8 is read big-endian.

What the segment list holds: srhSegmentIPv6ListSection (IE 497, RFC 9487) is an octet
array of the SRH Segment List, 16 octets per segment, in the order of the SRH (the last
segment first). We keep that order and drop a trailing partial segment.
"""

from __future__ import annotations

# -- flow keys and counters --------------------------------------------------------------
OCTET_DELTA_COUNT = 1
PACKET_DELTA_COUNT = 2
PROTOCOL_IDENTIFIER = 4
IP_CLASS_OF_SERVICE = 5  # the whole Traffic Class / TOS octet: DSCP is its top 6 bits
SOURCE_TRANSPORT_PORT = 7
SOURCE_IPV4_ADDRESS = 8
DESTINATION_TRANSPORT_PORT = 11
DESTINATION_IPV4_ADDRESS = 12
FLOW_END_SYS_UP_TIME = 21  # v9 LAST_SWITCHED: milliseconds of the exporter's uptime
FLOW_START_SYS_UP_TIME = 22  # v9 FIRST_SWITCHED
SOURCE_IPV6_ADDRESS = 27
DESTINATION_IPV6_ADDRESS = 28
FLOW_LABEL_IPV6 = 31  # 20 bits; v9 sends 3 octets, IPFIX 4
FLOW_DIRECTION = 61  # 0 ingress, 1 egress
OCTET_TOTAL_COUNT = 85
PACKET_TOTAL_COUNT = 86
FLOW_START_SECONDS = 150
FLOW_END_SECONDS = 151
FLOW_START_MILLISECONDS = 152
FLOW_END_MILLISECONDS = 153
FLOW_START_MICROSECONDS = 154  # NTP timestamp format (RFC 7011 section 6.1.9)
FLOW_END_MICROSECONDS = 155
FLOW_START_NANOSECONDS = 156
FLOW_END_NANOSECONDS = 157
SYSTEM_INIT_TIME_MILLISECONDS = 160  # what flowStart/EndSysUpTime count from (IPFIX)
IP_DIFF_SERV_CODE_POINT = 195  # the DSCP itself
SRH_SEGMENT_IPV6_LIST_SECTION = 497

# -- sampling (options records, or data records that carry them) -------------------------
SAMPLING_INTERVAL = 34  # v9 SAMPLING_INTERVAL, IPFIX samplingInterval (deprecated there)
SAMPLING_ALGORITHM = 35
SAMPLER_ID = 48  # v9 FLOW_SAMPLER_ID, IPFIX samplerId
SAMPLER_MODE = 49
SAMPLER_RANDOM_INTERVAL = 50  # v9 FLOW_SAMPLER_RANDOM_INTERVAL
SELECTOR_ID = 302
SAMPLING_PACKET_INTERVAL = 305  # PSAMP systematic count-based: take this many...
SAMPLING_PACKET_SPACE = 306  # ...then skip this many

NTP_UNIX_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01

# Element -> the column it feeds. Integer columns unless named in ADDRESS_COLUMNS.
COLUMN_OF: dict[int, str] = {
    SOURCE_IPV6_ADDRESS: "source",
    SOURCE_IPV4_ADDRESS: "source",
    DESTINATION_IPV6_ADDRESS: "destination",
    DESTINATION_IPV4_ADDRESS: "destination",
    PROTOCOL_IDENTIFIER: "protocol",
    SOURCE_TRANSPORT_PORT: "source_port",
    DESTINATION_TRANSPORT_PORT: "destination_port",
    IP_DIFF_SERV_CODE_POINT: "dscp",
    IP_CLASS_OF_SERVICE: "dscp",
    FLOW_LABEL_IPV6: "flow_label",
    OCTET_DELTA_COUNT: "octets",
    OCTET_TOTAL_COUNT: "octets",
    PACKET_DELTA_COUNT: "packets",
    PACKET_TOTAL_COUNT: "packets",
    FLOW_DIRECTION: "direction",
    FLOW_START_MILLISECONDS: "start",
    FLOW_START_SECONDS: "start",
    FLOW_START_NANOSECONDS: "start",
    FLOW_START_MICROSECONDS: "start",
    FLOW_START_SYS_UP_TIME: "start",
    FLOW_END_MILLISECONDS: "end",
    FLOW_END_SECONDS: "end",
    FLOW_END_NANOSECONDS: "end",
    FLOW_END_MICROSECONDS: "end",
    FLOW_END_SYS_UP_TIME: "end",
    SRH_SEGMENT_IPV6_LIST_SECTION: "segments",
    SAMPLER_ID: "sampler",
    SELECTOR_ID: "sampler",
    SAMPLING_INTERVAL: "sampling_interval",
    SYSTEM_INIT_TIME_MILLISECONDS: "system_init_ms",
}

# Within one column, the element read when a template carries several.
PREFERENCE: tuple[int, ...] = (
    SOURCE_IPV6_ADDRESS,
    SOURCE_IPV4_ADDRESS,
    DESTINATION_IPV6_ADDRESS,
    DESTINATION_IPV4_ADDRESS,
    IP_DIFF_SERV_CODE_POINT,
    IP_CLASS_OF_SERVICE,
    OCTET_DELTA_COUNT,
    OCTET_TOTAL_COUNT,
    PACKET_DELTA_COUNT,
    PACKET_TOTAL_COUNT,
    FLOW_START_MILLISECONDS,
    FLOW_START_NANOSECONDS,
    FLOW_START_MICROSECONDS,
    FLOW_START_SECONDS,
    FLOW_START_SYS_UP_TIME,
    FLOW_END_MILLISECONDS,
    FLOW_END_NANOSECONDS,
    FLOW_END_MICROSECONDS,
    FLOW_END_SECONDS,
    FLOW_END_SYS_UP_TIME,
    SELECTOR_ID,
    SAMPLER_ID,
)

ADDRESS_COLUMNS = frozenset({"source", "destination"})
ADDRESS_LENGTHS = {
    SOURCE_IPV6_ADDRESS: 16,
    DESTINATION_IPV6_ADDRESS: 16,
    SOURCE_IPV4_ADDRESS: 4,
    DESTINATION_IPV4_ADDRESS: 4,
}
# Octet arrays: kept as bytes, never read as integers.
OCTET_ARRAYS = frozenset({SRH_SEGMENT_IPV6_LIST_SECTION, *ADDRESS_LENGTHS})
TIME_ELEMENTS = frozenset(e for e, column in COLUMN_OF.items() if column in ("start", "end"))

# Elements an options record may carry to say how an exporter samples (sampling.py).
SAMPLING_ELEMENTS = frozenset(
    {
        SAMPLING_INTERVAL,
        SAMPLING_ALGORITHM,
        SAMPLER_ID,
        SAMPLER_MODE,
        SAMPLER_RANDOM_INTERVAL,
        SELECTOR_ID,
        SAMPLING_PACKET_INTERVAL,
        SAMPLING_PACKET_SPACE,
    }
)

IPV4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def column_elements(elements: list[int]) -> dict[str, int]:
    """Which element feeds each column, for a template's list of (non-enterprise) elements."""
    chosen: dict[str, int] = {}
    rank = {e: i for i, e in enumerate(PREFERENCE)}
    for element in elements:
        column = COLUMN_OF.get(element)
        if column is None:
            continue
        current = chosen.get(column)
        if current is None or rank.get(element, 99) < rank.get(current, 99):
            chosen[column] = element
    return chosen


def time_to_ms(element: int, value: int, sysuptime_base_ms: int | None) -> int:
    """A flow start/end element's value as Unix milliseconds. SysUpTime elements need the
    wall-clock time at which the exporter's uptime was zero (`sysuptime_base_ms`)."""
    if element in (FLOW_START_MILLISECONDS, FLOW_END_MILLISECONDS):
        return value
    if element in (FLOW_START_SECONDS, FLOW_END_SECONDS):
        return value * 1000
    if element in (FLOW_START_SYS_UP_TIME, FLOW_END_SYS_UP_TIME):
        return (sysuptime_base_ms or 0) + value
    # NTP format: 32 bits of seconds since 1900, 32 bits of fraction. IE 154/155 ignore
    # the fraction's low 11 bits (microsecond resolution); the millisecond result is the same.
    return ((value >> 32) - NTP_UNIX_OFFSET_S) * 1000 + ((value & 0xFFFFFFFF) * 1000 >> 32)
