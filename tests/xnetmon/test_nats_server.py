"""nats-server started on free ports, with JetStream, stopped and started again on the same ports;
a three-server cluster whose routes take only its nodes' certificates."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from tests.bus_support import running_bus, running_cluster
from tests.support import wait_until

pytestmark = pytest.mark.tool("nats-server")


def varz(server) -> dict:
    with urllib.request.urlopen(server.monitor_url + "/varz", timeout=5) as answer:
        return json.load(answer)


def test_the_server_runs_jetstream_with_tls_and_restarts_on_its_ports(tmp_path):
    with running_bus(tmp_path) as (_, server):
        first = varz(server)
        assert first["port"] == server.ports.port and first["tls_required"] and first["tls_verify"]
        assert first["jetstream"]["config"]["store_dir"].startswith(str(tmp_path))
        assert server.url == f"tls://127.0.0.1:{server.ports.port}"
        server.stop()
        server.start()
        assert varz(server)["server_id"] != first["server_id"]
        assert varz(server)["port"] == first["port"]
    with pytest.raises(OSError):
        varz(server)


def routez(server) -> dict:
    with urllib.request.urlopen(server.monitor_url + "/routez", timeout=5) as answer:
        return json.load(answer)


def test_a_cluster_elects_a_leader_and_a_site_certificate_cannot_join_its_routes(tmp_path):
    with running_cluster(tmp_path) as (pki, cluster):
        assert cluster.wait_for_leader() in {node.name for node in cluster.nodes}
        assert [cluster.jsz(i)["meta_cluster"]["cluster_size"] for i in range(3)] == [3, 3, 3]
        assert all(routez(server)["num_routes"] == 2 for server in cluster.servers)
        # a server that dials the routes with a site's certificate (the same CA) is refused
        rogue = tmp_path / "rogue.conf"
        tls = {
            "cert_file": str(pki / "sites/cnty1a.pem"),
            "key_file": str(pki / "sites/cnty1a-key.pem"),
            "ca_file": str(pki / "ca.pem"),
            "timeout": 5,
        }
        cluster_block = {"name": "xnet", "listen": "127.0.0.1:-1", "routes": [cluster.nodes[0].route_url], "tls": tls}
        rogue.write_text(f"listen: 127.0.0.1:-1\nserver_name: rogue\ncluster: {json.dumps(cluster_block)}\n")
        log = tmp_path / "rogue.log"
        with open(log, "wb") as output:
            process = subprocess.Popen([cluster.servers[0].binary, "-c", str(rogue)], stderr=output)
        try:
            wait_until(
                lambda: "Route Error 'Authorization Violation'" in log.read_text(),
                what="n1 answering the rogue route with an authorization error",
            )
        finally:
            process.kill()
            process.wait()
        assert all(routez(server)["num_routes"] == 2 for server in cluster.servers)
