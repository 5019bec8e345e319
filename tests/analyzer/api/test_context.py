"""What every router serves from (analyzer.api.context): the store and the parts beside it, fixed
once the app is made, and the current root-cause hints as the API's models."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from analyzer.api import models as m
from analyzer.api.context import ApiContext
from analyzer.api.tokens import WriteTokens
from analyzer.rootcause.hints import HintTracker
from analyzer.rootcause.model import Diagnosis
from analyzer.store.memory import WindowStore


def context(hints=None) -> ApiContext:
    return ApiContext(
        store=WindowStore({}),
        tokens=WriteTokens(),
        clock=lambda: 0,
        probes=None,
        hints=hints,
        site_names={},
        max_body_bytes=1000,
    )


def test_without_root_cause_analysis_there_are_no_hints():
    assert context().current_hints() == []


def test_the_trackers_hints_become_the_apis_hint_models_field_for_field():
    tracker = HintTracker(confirm_epochs=1)  # these hints are given, not inferred: shown at once
    tracker.update(
        [Diagnosis("link-loss", ("prov2>city2a",), ("egov", "video"), 0.9, ("4 of 6 paths lost 40%",))], 1_000
    )
    (hint,) = context(tracker.hints).current_hints()
    assert hint == m.Hint(
        kind="link-loss",
        suspects=["prov2>city2a"],
        slices=["egov", "video"],
        confidence=0.9,
        evidence=["4 of 6 paths lost 40%"],
        first_seen_ns=1_000,
        last_seen_ns=1_000,
    )


def test_a_hint_the_api_cannot_show_is_refused_not_passed_on():
    tracker = HintTracker(confirm_epochs=1)  # these hints are given, not inferred: shown at once
    tracker.update([Diagnosis("gremlins", ("a>b",), ("video",), 0.5)], 1_000)
    with pytest.raises(ValidationError, match="kind"):
        context(tracker.hints).current_hints()


def test_the_context_is_fixed_once_made():
    with pytest.raises(dataclasses.FrozenInstanceError):
        context().tokens = WriteTokens(shared="s3cret")
