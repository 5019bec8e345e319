"""The bus's PKI and server configuration: file modes, re-runs that keep what exists, and a
real nats-server that takes the certificates it issued and refuses any other client."""

from __future__ import annotations

import asyncio
import json
import re
import stat

import nats
import pytest
from cryptography import x509

from collector.bus.connection import BusEndpoint
from tests.bus_support import connect_options, running_bus
from xnetmon import bus_setup


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_and_add_site_write_keys_private_and_certificates_readable(tmp_path):
    pki = bus_setup.init(tmp_path / "pki")
    bus_setup.add_site(pki, "cnty1a")
    for name in ("ca", "server", "analyzer", "sites/cnty1a"):
        assert mode(pki / f"{name}.pem") == 0o644
        assert mode(pki / f"{name}-key.pem") == 0o600
    assert mode(pki / "nats-server.conf") == 0o600
    site = x509.load_pem_x509_certificate((pki / "sites/cnty1a.pem").read_bytes())
    assert site.subject.rfc4514_string() == bus_setup.user_of("site-cnty1a") == "CN=xnet-site-cnty1a"
    assert site.issuer == x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes()).subject


def test_re_running_keeps_keys_and_writes_the_configuration_from_the_sites_present(tmp_path):
    pki = bus_setup.init(tmp_path)
    bus_setup.add_site(pki, "cnty1a")
    kept = {p: p.read_bytes() for p in [*pki.glob("*.pem"), *pki.glob("sites/*.pem")]}
    bus_setup.init(pki)
    bus_setup.add_site(pki, "cnty1a")
    bus_setup.add_site(pki, "cnty2b")
    assert len(kept) == 8 and all(path.read_bytes() == data for path, data in kept.items())
    assert bus_setup.sites(pki) == ["cnty1a", "cnty2b"]
    users = json.loads(re.search(r"authorization: (\{.*\})", (pki / "nats-server.conf").read_text(), re.S)[1])
    by_user = {u["user"]: u["permissions"] for u in users["users"]}
    assert by_user["CN=xnet-site-cnty2b"]["publish"]["allow"] == [
        "xnet.windows.cnty2b",
        "xnet.observations.cnty2b",
        "xnet.health.cnty2b",
    ]
    assert by_user["CN=xnet-analyzer"]["publish"]["allow"] == [
        "$JS.API.>",
        "$JS.ACK.>",
        "$O.XNET_ANALYZERS.>",
        "$JS.FC.OBJ_XNET_ANALYZERS.>",
        "xnet-partials.*",  # a partition's reports to its combiner
    ]


def test_add_site_needs_a_ca_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="bus init"):
        bus_setup.add_site(tmp_path, "cnty1a")


def refused(endpoint: BusEndpoint) -> str:
    async def attempt() -> None:
        client = await nats.connect(**connect_options(endpoint))
        await client.close()

    with pytest.raises(Exception) as caught:
        asyncio.run(attempt())
    return f"{type(caught.value).__name__}: {caught.value}"


@pytest.mark.tool("nats-server")
def test_a_client_without_a_valid_certificate_is_refused(tmp_path):
    stranger = bus_setup.init(tmp_path / "stranger")  # another CA, same names
    bus_setup.add_site(stranger, "cnty1a")
    with running_bus(tmp_path) as (pki, server):
        no_certificate = BusEndpoint((server.url,), "site-cnty1a", ca_file=pki / "ca.pem")
        other_ca = BusEndpoint(
            (server.url,),
            "site-cnty1a",
            ca_file=pki / "ca.pem",
            cert_file=stranger / "sites/cnty1a.pem",
            key_file=stranger / "sites/cnty1a-key.pem",
        )
        plain = BusEndpoint((server.url.replace("tls://", "nats://"),), "site-cnty1a")
        for endpoint in (no_certificate, other_ca, plain):
            refused(endpoint)

        async def accepted() -> bool:
            client = await nats.connect(**connect_options(bus_setup.site_endpoint(pki, "cnty1a", (server.url,))))
            connected = client.is_connected
            await client.close()
            return connected

        assert asyncio.run(accepted())
        assert "TLS handshake error" in server.log_file.read_text()
