"""SLA policies (analyzer/sla/policies.py): the defaults, the checks, the file and its errors."""

from __future__ import annotations

import json

import pytest

from analyzer.sla.policies import (
    DEFAULT_BURN_WINDOWS,
    DEFAULT_POLICY_FILE,
    BurnWindow,
    ConfigError,
    Objective,
    SlaPolicy,
    default_policies,
    load_policies,
    parse_policies,
    policy_from_dict,
    policy_to_dict,
)
from analyzer.sla.verdicts import default_policies as reexported_defaults
from analyzer.sla.verdicts import load_policies as reexported_load
from collector.contract.records import RTT_BUCKETS_S
from collector.contract.slice_catalog import DEFAULT_SLICES

ALLOWED = "0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.3, 1 (seconds)"


def test_defaults_cover_the_default_slices_with_bucket_bounds():
    policies = default_policies()
    assert list(policies) == [s.name for s in DEFAULT_SLICES] == ["video", "egov", "data", "best-effort"]
    for name, p in policies.items():
        assert p.slice == name
        assert p.burn_windows == DEFAULT_BURN_WINDOWS
        for o in p.objectives:
            if o.name.endswith("percentile"):
                assert o.bound in RTT_BUCKETS_S
    video = {o.name: (o.bound, o.percentile) for o in policies["video"].objectives}
    assert video == {
        "two-way-delay-percentile": (0.150, 99.0),
        "two-way-delay-variation-percentile": (0.030, 99.0),
        "two-way-packet-loss": (0.001, None),
        "availability": (0.9999, None),
    }
    assert {o.name: o.bound for o in policies["best-effort"].objectives} == {
        "two-way-packet-loss": 0.05,
        "availability": 0.99,
    }


def test_shipped_file_is_the_defaults():
    assert load_policies(DEFAULT_POLICY_FILE) == default_policies()
    assert reexported_load(DEFAULT_POLICY_FILE) == reexported_defaults()


def test_dict_round_trip_is_json():
    for p in default_policies().values():
        assert policy_from_dict(json.loads(json.dumps(policy_to_dict(p)))) == p


def test_file_keys_left_out_take_the_defaults_and_others_override():
    policies = parse_policies(
        "policies:\n"
        "  lab:\n"
        "    objectives: [{name: two-way-packet-loss, bound: 0.01}]\n"
        "    compliance_window_s: 60\n"
        "    hysteresis_intervals: 2\n"
        "    burn_windows: [{long_s: 10, short_s: 2, factor: 14.4, severity: page}]\n"
        "  other:\n"
        "    objectives: [{name: one-way-delay-percentile, percentile: 99, bound: 0.05}]\n"
    )
    lab = policies["lab"]
    assert (lab.compliance_window_s, lab.hysteresis_intervals, lab.objective_ratio) == (60, 2, 0.999)
    assert lab.burn_windows == (BurnWindow(10, 2, 14.4, "page"),)
    assert policies["other"].burn_windows == DEFAULT_BURN_WINDOWS
    assert policies["other"].objectives == (Objective("one-way-delay-percentile", 0.05, 99.0),)


# ---------------------------------------------------------------------------------------
# Policies built in code refuse what a file would


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Objective("two-way-delay-percentile", 0.2, 99.0), f"not an RTT bucket bound; use one of {ALLOWED}"),
        (lambda: Objective("two-way-delay-variation-percentile", 0.025, 99.0), "not an RTT bucket bound"),
        (lambda: Objective("latency", 0.1), "unknown objective 'latency'"),
        (lambda: Objective("two-way-delay-percentile", 0.1), "needs a percentile"),
        (lambda: Objective("two-way-delay-percentile", 0.1, 0.0), "percentile above 0"),
        (lambda: Objective("one-way-delay-percentile", 0.1, 95.0), "use percentile 99"),
        (lambda: Objective("two-way-packet-loss", 1.5), "loss ratio from 0 to below 1"),
        (lambda: Objective("two-way-packet-loss", 0.1, 99.0), "takes no percentile"),
        (lambda: Objective("availability", 0.0), "available share above 0"),
        (lambda: BurnWindow(300, 3600, 14.4, "page"), "short_s < long_s"),
        (lambda: BurnWindow(3600, 300, 14.4, "pager"), "severity page or ticket"),
        (lambda: SlaPolicy("x", ()), "at least one objective"),
        (lambda: SlaPolicy("x", (Objective("availability", 0.9), Objective("availability", 0.99))), "appears twice"),
        (lambda: SlaPolicy("x", (Objective("availability", 0.9),), objective_ratio=1.0), "objective_ratio"),
        (lambda: SlaPolicy("x", (Objective("availability", 0.9),), hysteresis_intervals=0), "hysteresis_intervals"),
        (lambda: SlaPolicy("x", (Objective("availability", 0.9),), unavailable_loss=0), "unavailable_loss"),
    ],
)
def test_code_built_policies_are_checked(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_every_bucket_bound_is_accepted():
    for bound in RTT_BUCKETS_S:
        Objective("two-way-delay-percentile", bound, 99.9)


# ---------------------------------------------------------------------------------------
# File errors: FILE: KEY.PATH: expectation, all at once

VALID = "{name: two-way-packet-loss, bound: 0.01}"

FILE_ERRORS = [
    (
        "bound not a bucket",
        "policies:\n  video:\n    objectives:\n      - {name: two-way-delay-percentile, percentile: 99, bound: 0.2}\n",
        [f"policies.video.objectives[0].bound: delay bound 0.2 s is not an RTT bucket bound; use one of {ALLOWED}"],
    ),
    (
        "misspelt key",
        f"policies:\n  video:\n    objectives: [{VALID}]\n    objective_ration: 0.9\n",
        ["policies.video.objective_ration: unknown key 'objective_ration'; did you mean 'objective_ratio'?"],
    ),
    (
        "misspelt objective key",
        "policies:\n  video:\n    objectives: [{name: two-way-packet-loss, bond: 0.01}]\n",
        [
            "policies.video.objectives[0].bond: unknown key 'bond'; did you mean 'bound'?",
            "policies.video.objectives[0].bound: required key is missing",
        ],
    ),
    (
        "string for a number",
        "policies:\n  egov:\n    objectives: [{name: two-way-packet-loss, bound: '0.01'}]\n",
        ["policies.egov.objectives[0].bound: expected a valid number, got '0.01'"],
    ),
    (
        "unknown objective and a percentile where none belongs",
        "policies:\n  egov:\n    objectives:\n      - {name: latency, bound: 1}\n"
        "      - {name: availability, percentile: 99, bound: 0.99}\n",
        [
            "policies.egov.objectives[0].name: unknown objective 'latency' (objectives are: two-way-delay-percentile",
            "policies.egov.objectives[1].percentile: availability takes no percentile",
        ],
    ),
    (
        "objective twice",
        f"policies:\n  egov:\n    objectives: [{VALID}, {VALID}]\n",
        ["policies.egov.objectives: objective 'two-way-packet-loss' appears twice"],
    ),
    (
        "no objectives",
        "policies:\n  data:\n    objective_ratio: 0.99\n",
        ["policies.data.objectives: required key is missing"],
    ),
    (
        "ratio out of range",
        f"policies:\n  data:\n    objectives: [{VALID}]\n    objective_ratio: 1\n",
        ["policies.data.objective_ratio: expected less than 1, got 1"],
    ),
    (
        "burn window upside down",
        f"policies:\n  data:\n    objectives: [{VALID}]\n"
        "    burn_windows: [{long_s: 300, short_s: 3600, factor: 14.4, severity: page}]\n",
        ["policies.data.burn_windows[0]: short_s (3600) must be shorter than long_s (300)"],
    ),
    (
        "bad severity",
        f"policies:\n  data:\n    objectives: [{VALID}]\n"
        "    burn_windows: [{long_s: 3600, short_s: 300, factor: 14.4, severity: pager}]\n",
        ["policies.data.burn_windows[0].severity: expected 'page' or 'ticket', got 'pager'"],
    ),
    (
        "fractional hysteresis",
        f"policies:\n  data:\n    objectives: [{VALID}]\n    hysteresis_intervals: 1.5\n",
        ["policies.data.hysteresis_intervals: expected a valid integer, got 1.5"],
    ),
    (
        "bad slice name",
        f"policies:\n  Video:\n    objectives: [{VALID}]\n",
        ["policies.Video: slice name 'Video' must be a lowercase letter"],
    ),
    ("no policies", "policies: {}\n", ["policies: expected at least 1 item, got 0"]),
    (
        "unknown top-level key",
        f"policy:\n  video:\n    objectives: [{VALID}]\n",
        ["policy: unknown key 'policy'; did you mean 'policies'?", "policies: required key is missing"],
    ),
    ("not a mapping", "- video\n", ["expected a mapping with a 'policies' key, got list"]),
    ("empty file", "", ["expected a mapping with a 'policies' key, got NoneType"]),
    ("invalid YAML", "policies:\n  video: [\n", [":3:1: invalid YAML"]),
    (
        "key twice",
        f"policies:\n  video:\n    objectives: [{VALID}]\n  video:\n    objectives: [{VALID}]\n",
        [":4:3: invalid YAML: key 'video' appears twice (first on line 2)"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in FILE_ERRORS], ids=[c[0] for c in FILE_ERRORS])
def test_file_errors_name_the_file_and_the_key(tmp_path, text, expected):
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_policies(path)
    problems = caught.value.problems
    assert len(problems) == len(expected), problems
    assert all(problem.startswith(f"{path}") for problem in problems), problems
    for fragment in expected:
        assert any(fragment in problem for problem in problems), (fragment, problems)


def test_every_problem_is_reported_at_once():
    text = (
        "policies:\n"
        "  video:\n    objectives: [{name: two-way-delay-percentile, percentile: 99, bound: 0.2}]\n"
        "  egov:\n    objectives: [{name: two-way-packet-loss, bound: 2}]\n    unavailable_loss: 0\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_policies(text, "site.yaml")
    assert [p.split(": ")[1] for p in caught.value.problems] == [
        "policies.video.objectives[0].bound",
        "policies.egov.objectives[0].bound",
        "policies.egov.unavailable_loss",
    ]


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}/missing.yaml: cannot read: No such file"):
        load_policies(tmp_path / "missing.yaml")
