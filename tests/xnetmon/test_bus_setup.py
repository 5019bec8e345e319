"""The bus's PKI and server configuration: file modes, re-runs that keep what exists, and a
real nats-server that takes the certificates it issued and refuses any other client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
import time

import nats
import nats.errors
import pytest
from cryptography import x509

from analyzer.bus_checkpoint import Checkpoint, checkpoint_store, load_checkpoint, save_checkpoint
from analyzer.bus_intake import BusIntake
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.bus.connection import BusEndpoint
from collector.bus.stream import STREAM_NAME, StreamLimits, stream_config
from tests.bus_support import connect_options, create_stream, running_bus, stream_info, stream_messages
from tests.support import wait_until, wait_until_async
from xnetmon import bus_setup
from xnetmon.nats_server import NatsServer


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
        "_XNET_PROBE.*.*",
    ]
    analyzer = by_user["CN=xnet-analyzer"]["publish"]["allow"]
    assert not any(name.startswith(("$JS.API.>", "xnet.")) for name in analyzer)
    assert "$JS.API.CONSUMER.MSG.NEXT.XNET.*" in analyzer and "$O.XNET_ANALYZERS.>" in analyzer
    assert "xnet-partials.*" in analyzer  # a partition's reports to its combiner


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


def test_a_cluster_has_a_certificate_and_a_configuration_per_node(tmp_path):
    nodes = tuple(bus_setup.ClusterNode(f"n{i}", f"bus{i}.example.net") for i in (1, 2, 3))
    pki = bus_setup.init(tmp_path, nodes=nodes)
    bus_setup.add_site(pki, "cnty1a")
    assert bus_setup.cluster_nodes(pki) == nodes
    assert bus_setup.server_urls(pki) == tuple(f"tls://bus{i}.example.net:4222" for i in (1, 2, 3))
    for node in nodes:
        cert = x509.load_pem_x509_certificate((pki / f"nodes/{node.name}.pem").read_bytes())
        assert cert.subject.rfc4514_string() == bus_setup.ROUTE_USER
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert node.host in names.get_values_for_type(x509.DNSName)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {u._name for u in usages} == {"serverAuth", "clientAuth"}  # routes dial out as well
        assert mode(pki / f"nodes/{node.name}-key.pem") == 0o600 and mode(pki / f"nodes/{node.name}.conf") == 0o600
    conf = (pki / "nodes/n2.conf").read_text()
    block = json.loads(re.search(r"^cluster: (\{.*?^\})", conf, re.S | re.M)[1])
    assert block["routes"] == ["nats-route://bus1.example.net:6222", "nats-route://bus3.example.net:6222"]
    assert block["authorization"] == {"user": "CN=xnet-bus-server"} and block["tls"]["verify_and_map"]
    assert 'server_name: "n2"' in conf and "xnet.windows.cnty1a" in conf
    kept = (pki / "nodes/n1-key.pem").read_bytes()
    bus_setup.init(pki)  # re-run without nodes: still the cluster, its keys kept
    assert (pki / "nodes/n1-key.pem").read_bytes() == kept and not (pki / "server.pem").exists()


def test_a_cluster_needs_three_distinct_nodes(tmp_path):
    with pytest.raises(ValueError, match="at least 3"):
        bus_setup.init(tmp_path, nodes=(bus_setup.ClusterNode("a", "h1"), bus_setup.ClusterNode("b", "h2")))
    same = tuple(bus_setup.ClusterNode(f"n{i}", "bus.example.net") for i in range(3))
    with pytest.raises(ValueError, match="share a host"):
        bus_setup.init(tmp_path, nodes=same)


def denied(endpoint: BusEndpoint, act) -> list[str]:
    """The server's errors while `act(client, js)` runs on a connection of `endpoint`; a
    request the server refuses gets no answer, so its own timeout (short) is expected."""
    errors: list[str] = []

    async def attempt() -> None:
        client = await nats.connect(**connect_options(endpoint, errors))
        try:
            with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                await act(client, client.jetstream(timeout=1.0))
            await client.flush()
            # the refusal may come after the flush's PONG: closing first loses it (the server's
            # -ERR then meets the client's TLS close_notify)
            with contextlib.suppress(AssertionError):
                await wait_until_async(lambda: errors, timeout=10, what="the server's refusal")
        finally:
            await client.close()

    asyncio.run(attempt())
    return errors


@pytest.mark.tool("nats-server")
def test_an_analyzer_cannot_delete_the_stream_nor_publish_windows_and_a_site_cannot_read_consumers(tmp_path):
    with running_bus(tmp_path) as (pki, server):
        analyzer = bus_setup.analyzer_endpoint(pki, (server.url,))
        site = bus_setup.site_endpoint(pki, "cnty1a", (server.url,))
        create_stream(analyzer)  # as BusIntake makes it: allowed
        info = stream_info(analyzer)
        for act in (
            lambda client, js: js.delete_stream(STREAM_NAME),
            lambda client, js: js.purge_stream(STREAM_NAME),
            lambda client, js: js.update_stream(stream_config(StreamLimits(max_bytes=1 << 20))),
            lambda client, js: client.publish("xnet.windows.cnty1a", b"{}"),
            lambda client, js: js.publish("xnet.windows.cnty1a", b"{}"),
        ):
            errors = denied(analyzer, act)
            assert any("permissions violation for publish" in e for e in errors), errors
        after = stream_info(analyzer)
        assert after.state.messages == 0 and after.created == info.created
        assert after.config.max_bytes == info.config.max_bytes
        for act in (
            lambda client, js: js.consumer_info(STREAM_NAME, "analyzer"),
            lambda client, js: js.add_consumer(STREAM_NAME, durable_name="spy"),
            lambda client, js: js.stream_info(STREAM_NAME),
            lambda client, js: js.get_msg(STREAM_NAME, 1),
        ):
            assert any("permissions violation for publish" in e for e in denied(site, act))


def test_add_operator_writes_its_identity_and_its_probe_permissions(tmp_path):
    pki = bus_setup.init(tmp_path)
    bus_setup.add_site(pki, "cnty1a")
    cert = bus_setup.add_operator(pki, "noc")
    assert cert == pki / "operators/noc.pem" and mode(pki / "operators/noc-key.pem") == 0o600
    subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject.rfc4514_string()
    assert subject == bus_setup.user_of("operator-noc") == "CN=xnet-operator-noc"
    users = json.loads(re.search(r"authorization: (\{.*\})", (pki / "nats-server.conf").read_text(), re.S)[1])
    by_user = {u["user"]: u["permissions"] for u in users["users"]}
    assert by_user["CN=xnet-operator-noc"]["publish"]["allow"] == ["xnetprobe.*"]
    assert by_user["CN=xnet-operator-noc"]["subscribe"]["allow"][0] == "_XNET_PROBE.operator-noc.>"
    assert "xnetprobe.cnty1a" in by_user["CN=xnet-site-cnty1a"]["subscribe"]["allow"]
    assert not any(s.startswith("xnetprobe") for s in by_user["CN=xnet-site-cnty1a"]["publish"]["allow"])


@pytest.mark.tool("nats-server")
def test_only_an_operator_may_ask_and_a_site_hears_only_its_own_requests(tmp_path):
    """The server enforces who asks: a site cannot publish a probe request (to another site or
    itself) nor subscribe to another site's requests; an operator's request reaches the site."""

    async def check(pki, server) -> tuple[list[str], bytes]:
        site_errors: list[str] = []
        site = await nats.connect(**connect_options(bus_setup.site_endpoint(pki, "cnty1a", (server.url,)), site_errors))
        operator = await nats.connect(**connect_options(bus_setup.operator_endpoint(pki, "noc", (server.url,))))
        try:
            own = await site.subscribe("xnetprobe.cnty1a")
            await site.subscribe("xnetprobe.cnty2b")
            await site.publish("xnetprobe.cnty2b", b"from a site")
            await site.publish("xnetprobe.cnty1a", b"from itself")
            await site.flush()
            # Asked again every few seconds until heard: the check is who may ask, not delivery.
            deadline = time.monotonic() + 30
            while True:
                await operator.publish("xnetprobe.cnty1a", b"from the operator")
                await operator.flush()
                try:
                    message = await own.next_msg(timeout=3)
                    break
                except nats.errors.TimeoutError:
                    if time.monotonic() > deadline:
                        raise
            await site.flush()
            return site_errors, message.data
        finally:
            await site.close()
            await operator.close()

    with running_bus(tmp_path, operators=("noc",)) as (pki, server):
        errors, first = asyncio.run(check(pki, server))
    assert first == b"from the operator"  # the site's own publish never arrived before it
    text = " ".join(errors).lower()
    assert 'permissions violation for subscription to "xnetprobe.cnty2b"' in text, errors
    assert 'permissions violation for publish to "xnetprobe.cnty2b"' in text, errors
    assert 'permissions violation for publish to "xnetprobe.cnty1a"' in text, errors


def test_a_partitioned_directory_gives_its_server_the_sites_mapping(tmp_path):
    """`init(partitions=2)` is kept in the directory: a server started from it (no partition
    count given) maps a site's `xnet.windows.SITE` into one of the two partitions."""
    pki = bus_setup.init(tmp_path / "pki", partitions=2)
    bus_setup.add_sites(pki, ("cnty1a", "cnty2b"))
    assert bus_setup.configured_partitions(pki) == 2
    assert bus_setup.configured_partitions(bus_setup.init(tmp_path / "plain")) is None
    with NatsServer(pki, tmp_path / "server") as server:
        analyzer = bus_setup.analyzer_endpoint(pki, (server.url,))

        async def publish() -> None:
            admin = await nats.connect(**connect_options(analyzer))
            site = await nats.connect(**connect_options(bus_setup.site_endpoint(pki, "cnty1a", (server.url,))))
            try:
                await admin.jetstream().add_stream(stream_config(partitioned=True))
                await site.jetstream().publish("xnet.windows.cnty1a", b"{}")
            finally:
                await site.close()
                await admin.close()

        asyncio.run(publish())
        [(name, _, _)] = stream_messages(analyzer)
    assert re.fullmatch(r"xnet\.windows\.[01]\.cnty1a", name)


@pytest.mark.tool("nats-server")
def test_a_replica_with_its_own_identity_uses_only_its_own_consumers_and_checkpoints(tmp_path):
    pki = bus_setup.init(tmp_path / "pki", partitions=2)
    bus_setup.add_site(pki, "cnty1a")
    cert = bus_setup.add_analyzer(pki, "east")
    assert cert == pki / "analyzers/east.pem" and mode(pki / "analyzers/east-key.pem") == 0o600
    assert x509.load_pem_x509_certificate(cert.read_bytes()).subject.rfc4514_string() == "CN=xnet-analyzer-east"
    assert bus_setup.replica_durables("east", 2) == ("east", "east-combiner", "east-p0", "east-p1")
    server = NatsServer(pki, tmp_path / "server")
    try:
        east = bus_setup.analyzer_endpoint(pki, (server.url,), "east")
        assert east.identity == "analyzer-east"
        assert bus_setup.analyzer_endpoint(pki, (server.url,), "west").identity == "analyzer"  # no own certificate
        # its own partition consumer and checkpoint: made, saved, read back, no error
        intake = BusIntake(WindowStore(default_policies()), east, "east-p1", partition=1)
        try:
            wait_until(intake.connected.is_set, what="east-p1 connected")
        finally:
            intake.stop()
        assert intake.errors_total == 0 and intake.checkpoint_failures == 0

        async def own_checkpoint() -> Checkpoint | None:
            client = await nats.connect(**connect_options(east))
            try:
                objects = await checkpoint_store(client.jetstream())
                await save_checkpoint(objects, "east-p1", Checkpoint(7, "{}"))
                await save_checkpoint(objects, "east-p1", Checkpoint(8, "{}"))  # the old chunks purged
                return await load_checkpoint(objects, "east-p1")
            finally:
                await client.close()

        assert asyncio.run(own_checkpoint()) == Checkpoint(8, "{}")
        # another replica's consumer and checkpoint object: refused by the bus
        for act in (
            lambda client, js: js.add_consumer(STREAM_NAME, durable_name="west", filter_subject="xnet.*.0.*"),
            lambda client, js: js.delete_consumer(STREAM_NAME, "analyzer-p0"),
            lambda client, js: client.publish("$O.XNET_ANALYZERS.M.d2VzdA==", b"{}"),  # object "west"
        ):
            errors = denied(east, act)
            assert any("permissions violation for publish" in e for e in errors), errors
    finally:
        server.stop()
