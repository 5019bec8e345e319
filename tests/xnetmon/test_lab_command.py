"""`xnetmon lab ...` through the real dispatcher (xnetmon.cli.main)."""

from __future__ import annotations

import json

import pytest

import xnetmon.cli as dispatcher
from xnetmon.commands.lab import render_status


@pytest.fixture
def xnetmon(monkeypatch, capsys):
    # Only the lab's commands: the dispatcher is what is under test, not the other commands.
    monkeypatch.setattr(dispatcher, "COMMAND_MODULES", ("xnetmon.commands.lab",))

    def run(*argv: str) -> tuple[int, str, str]:
        code = dispatcher.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_unknown_topology_is_a_usage_error(xnetmon):
    code, _, err = xnetmon("lab", "up", "huge")
    assert code == 2
    assert "no topology 'huge'" in err and "small, tiny" in err


def test_bad_topology_file_names_the_file_and_key(xnetmon, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\naddressing: {prefix: 'fd00:5::/48'}\n"
        "sites: [{name: a, role: core}, {name: b, role: city}]\n"
        "links: [{a: a, b: c}]\n"
        "slices: [{name: best-effort, dscp: 0, id: 4, share: 20}]\n"
    )
    code, _, err = xnetmon("lab", "up", str(bad))
    assert code == 2
    assert f"{bad}: links[0].b: unknown site 'c'" in err


def test_heal_needs_an_id_or_all(xnetmon):
    code, _, err = xnetmon("lab", "heal")
    assert code == 2 and "FAULT-ID or --all" in err


@pytest.mark.root
@pytest.mark.lab
def test_fault_status_exec_path_and_heal(xnetmon, lab, monkeypatch):
    monkeypatch.setenv("XNETMON_LAB_STATE_DIR", str(lab.store.directory))
    code, out, _ = xnetmon("lab", "fault", "loss", "core-prov1", "--rate", "0.1", "--from", "core")
    assert code == 0 and out.startswith("loss-") and "core-prov1 (core->prov1)" in out
    fault_id = out.split(":")[0]
    code, out, _ = xnetmon("lab", "status", "--json")
    report = json.loads(out)
    assert [f["id"] for f in report["faults"]] == [fault_id]
    assert report["sites"][0] == {
        "name": "core",
        "role": "core",
        "namespace": lab.namespace("core"),
        "loopback": lab.address("core"),
        "host_prefix": lab.host_prefix("core"),
        "state": "up",
    }
    code, out, _ = xnetmon("lab", "status")
    assert fault_id in out and lab.namespace("cnty2b") in out and "video (dscp 34, id 1, 30%)" in out
    code, out, _ = xnetmon("lab", "path", "cnty1a", "core")
    assert out.strip() == "cnty1a > city1a > prov1 > core"
    assert xnetmon("lab", "exec", "prov1", "--", "true")[0] == 0
    assert xnetmon("lab", "exec", "prov1", "--", "false")[0] == 1
    code, _, err = xnetmon("lab", "exec", "nowhere", "--", "true")
    assert code == 2 and "no site 'nowhere'" in err
    code, _, err = xnetmon("lab", "fault", "down", "core-cnty9")
    assert code == 2 and "no link 'core-cnty9'" in err
    code, out, _ = xnetmon("lab", "heal", fault_id)
    assert code == 0 and lab.faults() == []
    code, out, _ = xnetmon("lab", "heal", "--all")
    assert out.strip() == "no active faults"


def test_status_renders_without_a_lab(tmp_path):
    from lab.lab import Lab
    from lab.state import StateStore

    report = Lab.from_name("tiny", StateStore(tmp_path)).status()
    assert report["up"] is False and report["faults"] == []
    text = render_status(report)
    assert "r1-r2" in text and "fd78:6e6d:7400::1" in text
