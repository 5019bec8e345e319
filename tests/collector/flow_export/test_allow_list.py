"""The exporter allow-list: prefixes of both families, single addresses, the forms recvfrom
gives (zone index, IPv4-mapped), no list, and prefixes that are not."""

from __future__ import annotations

import pytest

from collector.flow_export.allow_list import ExporterAllowList


def test_addresses_within_a_listed_prefix_are_allowed_and_others_are_not():
    allow = ExporterAllowList(["2001:db8:ff::/48", "192.0.2.0/24", "2001:db8::7"])
    assert allow.allows("2001:db8:ff:1::1") and allow.allows("192.0.2.200") and allow.allows("2001:db8::7")
    assert not allow.allows("2001:db8:fe::1") and not allow.allows("198.51.100.1") and not allow.allows("2001:db8::8")
    assert allow.prefixes == ("2001:db8:ff::/48", "192.0.2.0/24", "2001:db8::7/128")


def test_the_forms_a_socket_gives_are_judged_by_the_address_they_carry():
    allow = ExporterAllowList(["192.0.2.0/24", "fe80::/10"])
    assert allow.allows("::ffff:192.0.2.1")  # an IPv4 exporter on a dual-stack socket
    assert allow.allows("fe80::1%eth0")
    assert not allow.allows("::ffff:198.51.100.1")
    assert not allow.allows("not an address")


def test_no_list_allows_every_exporter_and_an_empty_one_none():
    assert ExporterAllowList(None).allows("2001:db8::1") and ExporterAllowList(None).prefixes is None
    assert not ExporterAllowList([]).allows("2001:db8::1")


@pytest.mark.parametrize("prefix", ["2001:db8::1/48", "192.0.2.0/33", "exporter.example"])
def test_a_prefix_that_is_not_one_is_named(prefix):
    with pytest.raises(ValueError, match=f"exporter prefix {prefix!r}"):
        ExporterAllowList([prefix])
