"""Which element feeds each flow column, and flow times in every encoding as Unix milliseconds."""

from __future__ import annotations

import pytest

from collector.flow_export import information_elements as ie


def test_the_preferred_element_feeds_a_column_whatever_the_template_order():
    elements = [
        ie.OCTET_TOTAL_COUNT,
        ie.OCTET_DELTA_COUNT,
        ie.SOURCE_IPV4_ADDRESS,
        ie.SOURCE_IPV6_ADDRESS,
        ie.IP_CLASS_OF_SERVICE,
        ie.IP_DIFF_SERV_CODE_POINT,
        ie.FLOW_START_SECONDS,
        ie.FLOW_START_MILLISECONDS,
        ie.SAMPLER_ID,
        ie.SELECTOR_ID,
    ]
    for order in (elements, elements[::-1]):
        chosen = ie.column_elements(order)
        assert chosen == {
            "octets": ie.OCTET_DELTA_COUNT,
            "source": ie.SOURCE_IPV6_ADDRESS,
            "dscp": ie.IP_DIFF_SERV_CODE_POINT,
            "start": ie.FLOW_START_MILLISECONDS,
            "sampler": ie.SELECTOR_ID,
        }


def test_elements_no_column_reads_are_skipped():
    assert ie.column_elements([999, 3, ie.PROTOCOL_IDENTIFIER]) == {"protocol": ie.PROTOCOL_IDENTIFIER}


def test_every_column_with_several_feeders_ranks_them_all():
    feeders: dict[str, list[int]] = {}
    for element, column in ie.COLUMN_OF.items():
        feeders.setdefault(column, []).append(element)
    for column, elements in feeders.items():
        if len(elements) > 1:
            assert set(elements) <= set(ie.PREFERENCE), column


T_S = 1_800_000_000  # a Unix time in seconds


@pytest.mark.parametrize(
    "element, value, base, ms",
    [
        (ie.FLOW_START_MILLISECONDS, T_S * 1000 + 7, None, T_S * 1000 + 7),
        (ie.FLOW_END_SECONDS, T_S, None, T_S * 1000),
        (ie.FLOW_START_SYS_UP_TIME, 3_600_000, T_S * 1000, T_S * 1000 + 3_600_000),
        (ie.FLOW_END_NANOSECONDS, (T_S + ie.NTP_UNIX_OFFSET_S) << 32 | 0x80000000, None, T_S * 1000 + 500),
        (ie.FLOW_START_MICROSECONDS, (T_S + ie.NTP_UNIX_OFFSET_S) << 32 | 0x40000000, None, T_S * 1000 + 250),
    ],
)
def test_flow_times_become_unix_milliseconds(element, value, base, ms):
    assert ie.time_to_ms(element, value, base) == ms


def test_address_and_octet_array_tables_agree_with_the_columns():
    assert {ie.COLUMN_OF[e] for e in ie.ADDRESS_LENGTHS} == ie.ADDRESS_COLUMNS
    assert {e for e, c in ie.COLUMN_OF.items() if c in ("start", "end")} == ie.TIME_ELEMENTS
    assert len(ie.IPV4_MAPPED_PREFIX + bytes(4)) == 16
