"""Connection options: plain without a CA, TLS with the client's certificate with one."""

from __future__ import annotations

import ssl

from collector.bus.connection import MAX_OUTSTANDING_PINGS, PING_INTERVAL_S, BusEndpoint, inbox_prefix
from xnetmon import bus_setup


def test_without_a_ca_the_connection_is_plain_and_reconnects_for_ever():
    options = BusEndpoint(("nats://127.0.0.1:4222",), "site-cnty1a").connect_options()
    assert "tls" not in options
    assert options["servers"] == ["nats://127.0.0.1:4222"]
    assert options["inbox_prefix"] == inbox_prefix("site-cnty1a") == "_XNET_INBOX.site-cnty1a"
    assert options["allow_reconnect"] and options["max_reconnect_attempts"] == -1


def test_a_server_that_stops_answering_is_left_within_seconds_not_minutes():
    """nats-py's default pings (every 2 min, 2 outstanding) notice a frozen server after
    minutes; agents and analyzers take their options from here (analyzer/test_bus_intake.py
    freezes a real server)."""
    options = BusEndpoint(("nats://127.0.0.1:4222",), "analyzer").connect_options()
    assert options["ping_interval"] == PING_INTERVAL_S and options["max_outstanding_pings"] == MAX_OUTSTANDING_PINGS
    assert PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1) <= 10


def test_with_a_ca_the_client_presents_its_certificate(tmp_path):
    pki = bus_setup.init(tmp_path)
    bus_setup.add_site(pki, "cnty1a")
    context = bus_setup.site_endpoint(pki, "cnty1a", ("tls://127.0.0.1:4222",)).tls_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1
