"""`xnetmon lab` without a lab up: help, commands that need one saying so, the status text
of a lab with faults, and mistakes caught before anything is touched.
(tests/xnetmon/test_lab_command.py drives faults on the `small` lab through the command.)"""

from __future__ import annotations

import signal

import pytest

from lab.lab import Lab
from lab.state import StateStore
from xnetmon.cli import main
from xnetmon.commands.lab import render_status


@pytest.fixture(autouse=True)
def no_lab(monkeypatch, tmp_path):
    """An empty lab record directory, and the test run's own SIGTERM handler kept."""
    monkeypatch.setenv("XNETMON_LAB_STATE_DIR", str(tmp_path / "lab"))
    before = signal.getsignal(signal.SIGTERM)
    yield tmp_path / "lab"
    signal.signal(signal.SIGTERM, before)


def test_without_a_sub_command_it_prints_its_help(capsys):
    assert main(["lab"]) == 2
    assert "fault" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["status"], ["path", "r1", "r3"]])
def test_commands_that_need_a_lab_say_it_is_not_up(capsys, argv):
    assert main(["lab", *argv]) == 2
    assert capsys.readouterr().err == "xnetmon lab: no lab is up (run `xnetmon lab up`)\n"


@pytest.mark.root
def test_down_with_nothing_up_says_so(capsys):
    assert main(["lab", "down"]) == 0
    assert capsys.readouterr().out == "no lab was up\n"


def test_exec_needs_a_command(capsys):
    assert main(["lab", "exec", "r1", "--"]) == 2
    assert "give a command to run" in capsys.readouterr().err


def test_a_bad_fault_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["lab", "fault", "loss", "r1-r2"])  # no rate
    assert "required" in capsys.readouterr().err


def test_the_status_text_lists_active_faults_with_their_start_and_summary(no_lab):
    lab = Lab.from_name("tiny", StateStore(no_lab))
    report = lab.status()
    report["faults"] = [{"id": "loss-1", "started_at": "2024-05-01T12:00:00Z", "summary": "10% loss on r1>r2"}]
    lines = render_status(report).splitlines()
    assert lines[0] == "lab tiny (fd78:6e6d:7400::/48), NOT complete"
    assert lines[-2].split() == ["FAULT", "SINCE", "WHAT"]
    assert lines[-1].split(maxsplit=2) == ["loss-1", "2024-05-01T12:00:00Z", "10% loss on r1>r2"]
    assert any(line.startswith("SLICES  video (dscp 34, id 1, 30%)") for line in lines)
