"""nats-server started on free ports, with JetStream, stopped and started again on the same ports."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.bus_support import running_bus

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
