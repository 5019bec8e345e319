"""The hysteresis state machine on its own: which status a run of raw statuses reports, and
from when."""

from __future__ import annotations

import pytest

from analyzer.sla.hysteresis import Hysteresis


@pytest.mark.parametrize(
    ("raws", "reported"),
    [
        ("ok ok ok", "ok"),
        ("ok ok", "no-data"),  # leaving no-data takes hold intervals too
        ("ok ok ok at-risk breached at-risk", "at-risk"),  # worse: the mildest of the run
        ("ok ok ok breached breached breached", "breached"),
        ("ok ok ok breached breached breached ok at-risk ok", "at-risk"),  # better: the worst of the run
        ("ok ok ok at-risk ok at-risk ok at-risk", "ok"),
        ("ok ok ok no-data no-data ok no-data no-data", "ok"),
        ("ok ok ok no-data no-data no-data", "no-data"),
        ("at-risk ok breached", "ok"),  # from no-data: the mildest
    ],
)
def test_hysteresis_rules(raws, reported):
    machine = Hysteresis(3)
    for i, raw in enumerate(raws.split()):
        machine.step(raw, i)
    assert machine.status == reported


def test_since_is_the_start_of_the_run_that_made_the_status():
    machine = Hysteresis(2)
    for start, raw in ((10, "ok"), (20, "ok"), (30, "breached"), (40, "ok"), (50, "breached"), (60, "breached")):
        machine.step(raw, start)
    assert (machine.status, machine.since_ns) == ("breached", 50)  # the run from 30 was ended by ok at 40


def test_a_hold_of_one_follows_every_change_at_once():
    machine = Hysteresis(1)
    for start, raw in enumerate(["ok", "breached", "no-data", "at-risk"]):
        machine.step(raw, start)
        assert (machine.status, machine.since_ns) == (raw, start)


def test_a_copy_continues_alone_and_the_state_holds_everything_but_the_hold():
    machine = Hysteresis(3)
    for start, raw in enumerate(["ok", "ok", "ok", "breached", "breached"]):
        machine.step(raw, start)
    copy = machine.copy()
    copy.step("breached", 5)
    assert (machine.status, copy.status) == ("ok", "breached")
    assert machine.to_state() == {
        "status": "ok",
        "since_ns": 0,
        "run_kind": "worse",
        "run_status": "breached",
        "run_start_ns": 3,
        "run_count": 2,
    }
    assert Hysteresis(3, **machine.to_state()) == machine
