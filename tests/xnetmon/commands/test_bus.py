"""`xnetmon bus init` and `xnetmon bus add-site` as an operator runs them."""

from __future__ import annotations

from tests.support import xnetmon


def test_init_then_add_site_tell_what_they_wrote(tmp_path):
    init = xnetmon("bus", "init", str(tmp_path), "--name", "bus.example.net")
    assert init.returncode == 0, init.stderr
    assert "nats-server.conf" in init.stdout and (tmp_path / "server.pem").exists()
    added = xnetmon("bus", "add-site", str(tmp_path), "cnty1a")
    assert added.returncode == 0, added.stderr
    assert "cnty1a-key.pem" in added.stdout
    assert "xnet.windows.cnty1a" in (tmp_path / "nats-server.conf").read_text()


def test_a_bad_site_name_or_a_missing_ca_is_a_usage_error(tmp_path):
    missing = xnetmon("bus", "add-site", str(tmp_path), "cnty1a")
    assert missing.returncode == 2 and "bus init" in missing.stderr
    xnetmon("bus", "init", str(tmp_path))
    bad = xnetmon("bus", "add-site", str(tmp_path), "cnty.1a")
    assert bad.returncode == 2 and "subject token" in bad.stderr
    assert not list(tmp_path.glob("sites/cnty*"))


def test_init_with_nodes_writes_a_cluster_and_names_every_url(tmp_path):
    nodes = ("bus1.example.net", "bus2.example.net", "2001:db8::3")
    init = xnetmon("bus", "init", str(tmp_path), *(arg for host in nodes for arg in ("--node", host)))
    assert init.returncode == 0, init.stderr
    assert "tls://bus1.example.net:4222 tls://bus2.example.net:4222 tls://[2001:db8::3]:4222" in init.stdout
    assert sorted(p.name for p in tmp_path.glob("nodes/*.conf")) == ["n1.conf", "n2.conf", "n3.conf"]
    assert not (tmp_path / "server.pem").exists() and not (tmp_path / "nats-server.conf").exists()
    added = xnetmon("bus", "add-site", str(tmp_path), "cnty1a")
    assert added.returncode == 0 and "n3.conf" in added.stdout
    assert all("xnet.windows.cnty1a" in p.read_text() for p in tmp_path.glob("nodes/*.conf"))


def test_a_cluster_of_two_is_a_usage_error(tmp_path):
    two = xnetmon("bus", "init", str(tmp_path), "--node", "a", "--node", "b")
    assert two.returncode == 2 and "at least 3 nodes" in two.stderr
    assert not (tmp_path / "ca.pem").exists()


def test_add_site_takes_many_sites_at_once(tmp_path):
    xnetmon("bus", "init", str(tmp_path))
    added = xnetmon("bus", "add-site", str(tmp_path), "cnty1a", "cnty2b", "cnty3c")
    assert added.returncode == 0, added.stderr
    assert added.stdout.count("give both and ca.pem") == 3
    assert all(f"xnet.windows.{s}" in (tmp_path / "nats-server.conf").read_text() for s in ("cnty1a", "cnty3c"))


def test_add_operator_tells_what_it_wrote_and_refuses_a_bad_name(tmp_path):
    assert xnetmon("bus", "add-operator", str(tmp_path), "noc").returncode == 2  # no CA yet
    assert xnetmon("bus", "init", str(tmp_path)).returncode == 0
    done = xnetmon("bus", "add-operator", str(tmp_path), "noc")
    assert done.returncode == 0 and f"operator noc: {tmp_path}/operators/noc.pem" in done.stdout
    assert (tmp_path / "operators" / "noc-key.pem").exists()
    bad = xnetmon("bus", "add-operator", str(tmp_path), "a.b")
    assert bad.returncode == 2 and "cannot be a bus subject token" in bad.stderr


def test_add_analyzer_gives_a_replica_its_own_identity_limited_to_its_own_consumers(tmp_path):
    assert xnetmon("bus", "add-analyzer", str(tmp_path), "east").returncode == 2  # no CA yet
    assert xnetmon("bus", "init", str(tmp_path), "--partitions", "2").returncode == 0
    done = xnetmon("bus", "add-analyzer", str(tmp_path), "east")
    assert done.returncode == 0 and f"analyzer replica east: {tmp_path}/analyzers/east.pem" in done.stdout
    assert "xnetmon analyzer --replica east" in done.stdout and (tmp_path / "analyzers" / "east-key.pem").exists()
    conf = (tmp_path / "nats-server.conf").read_text()
    assert '"CN=xnet-analyzer-east"' in conf and "$JS.API.CONSUMER.CREATE.XNET.east-p1.>" in conf
    assert "$JS.ACK.XNET_PARTIALS.east-combiner.>" in conf and "_XNET_INBOX.analyzer-east.>" in conf
    bad = xnetmon("bus", "add-analyzer", str(tmp_path), "a.b")
    assert bad.returncode == 2 and "cannot be a bus subject token" in bad.stderr


def test_init_with_partitions_maps_the_sites_and_add_site_keeps_the_mapping(tmp_path):
    init = xnetmon("bus", "init", str(tmp_path), "--partitions", "4")
    assert init.returncode == 0, init.stderr
    assert "--partitions 4 --partition I (0 to 3)" in init.stdout
    mapping = '"xnet.*.*": "xnet.{{wildcard(1)}}.{{partition(4,2)}}.{{wildcard(2)}}"'
    assert mapping in (tmp_path / "nats-server.conf").read_text()
    assert xnetmon("bus", "add-site", str(tmp_path), "cnty1a").returncode == 0
    assert xnetmon("bus", "init", str(tmp_path)).returncode == 0  # re-run without it: kept
    conf = (tmp_path / "nats-server.conf").read_text()
    assert mapping in conf and "xnet.windows.*.cnty1a" in conf  # the site may publish its mapped subjects


def test_a_partition_count_out_of_range_is_a_usage_error(tmp_path):
    for bad in ("0", "1025"):
        refused = xnetmon("bus", "init", str(tmp_path), "--partitions", bad)
        assert refused.returncode == 2 and "--partitions" in refused.stderr and "from 1 to 1024" in refused.stderr
    assert not (tmp_path / "ca.pem").exists()
