"""The slice classifier: each rule kind, rule order, the default, and errors that name the key."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.system.config_files import ConfigError
from collector.traffic.classifier import SliceClassifier, split_address


def a(text: str) -> bytes:
    """16 octets of an address; IPv4 becomes IPv4-mapped, as the dissector gives it."""
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + address.packed
    return address.packed


ANY = a("2001:db8::1")


def test_default_follows_the_catalogue_dscps() -> None:
    classifier = SliceClassifier.default()
    assert classifier.names == ("video", "egov", "data", "best-effort")
    assert [classifier.classify(ANY, ANY, d) for d in (34, 26, 18, 0, 46, 63)] == [
        "video",
        "egov",
        "data",
        "best-effort",
        "best-effort",
        "best-effort",
    ]


def test_prefix_rules_match_source_and_destination_including_ipv4() -> None:
    classifier = SliceClassifier.from_rules(
        [
            {"slice": "egov", "destination": ["fd00:10::/32", "10.1.0.0/16"]},
            {"slice": "data", "source": "fd00:20::/48"},
        ]
    )
    assert classifier.classify(ANY, a("fd00:10:ffff::9"), 0) == "egov"
    assert classifier.classify(ANY, a("10.1.200.3"), 0) == "egov"
    assert classifier.classify(ANY, a("10.2.0.1"), 0) == "best-effort"
    assert classifier.classify(a("fd00:20::5"), ANY, 0) == "data"
    assert classifier.classify(a("fd00:21::5"), ANY, 0) == "best-effort"
    assert classifier.classify(ANY, a("fd00:20::5"), 0) == "best-effort"  # source rule, not destination


def test_flow_label_ranges() -> None:
    classifier = SliceClassifier.from_rules(
        [
            {"slice": "video", "flow_label": [0x10000, 0x1FFFF]},
            {"slice": "egov", "flow_label": [[5, 5], 7]},
        ]
    )
    assert classifier.classify(ANY, ANY, 0, flow_label=0x10000) == "video"
    assert classifier.classify(ANY, ANY, 0, flow_label=0x1FFFF) == "video"
    assert classifier.classify(ANY, ANY, 0, flow_label=0x20000) == "best-effort"
    assert classifier.classify(ANY, ANY, 0, flow_label=5) == "egov"
    assert classifier.classify(ANY, ANY, 0, flow_label=6) == "best-effort"
    assert classifier.classify(ANY, ANY, 0, flow_label=7) == "egov"


def test_sid_rules_take_the_longest_prefix_of_the_active_segment() -> None:
    classifier = SliceClassifier.from_rules(
        [
            {"slice": "egov", "sid": "fd00:5::/48"},
            {"slice": "video", "sid": "fd00:5:0:1::/64"},
        ]
    )
    assert classifier.classify(ANY, ANY, 0, active_sid=a("fd00:5:0:1::100")) == "video"
    assert classifier.classify(ANY, ANY, 0, active_sid=a("fd00:5:0:2::100")) == "egov"
    assert classifier.classify(ANY, ANY, 0, active_sid=a("fd00:6::1")) == "best-effort"
    # no SRH: the destination alone never matches a SID rule
    assert classifier.classify(ANY, a("fd00:5:0:1::100"), 0) == "best-effort"


def test_slice_id_rules() -> None:
    classifier = SliceClassifier.from_rules([{"slice": "video", "slice_id": 1}, {"slice": "data", "slice_id": [3, 30]}])
    assert classifier.classify(ANY, ANY, 0, slice_id=1) == "video"
    assert classifier.classify(ANY, ANY, 0, slice_id=30) == "data"
    assert classifier.classify(ANY, ANY, 0, slice_id=2) == "best-effort"
    assert classifier.classify(ANY, ANY, 0) == "best-effort"


def test_first_matching_rule_wins_and_keys_of_one_rule_all_must_match() -> None:
    rules = [
        {"slice": "video", "destination": "fd00:1::/32", "dscp": [34, 36]},
        {"slice": "egov", "destination": "fd00:1::/32"},
        {"slice": "video", "dscp": 26},
    ]
    classifier = SliceClassifier.from_rules(rules, default="data")
    assert classifier.names == ("video", "egov", "data")
    assert classifier.classify(ANY, a("fd00:1::1"), 36) == "video"
    assert classifier.classify(ANY, a("fd00:1::1"), 26) == "egov"  # rule 1 before rule 2
    assert classifier.classify(ANY, a("fd00:2::1"), 26) == "video"
    assert classifier.classify(ANY, a("fd00:2::1"), 0) == "data"  # the default
    reordered = SliceClassifier.from_rules([rules[2], rules[1]], default="data")
    assert reordered.classify(ANY, a("fd00:1::1"), 26) == "video"


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            [{"slice": "v", "dscp": 1}, {"slice": "v", "dscp": 2}, {"slice": "v", "dscp": 64}],
            "slices.yaml: rules[2].dscp: expected 0..63, got 64",
        ),
        ([{"slice": "v", "dscp": [1, "af41"]}], "slices.yaml: rules[0].dscp: expected 0..63, got 'af41'"),
        (
            [{"slice": "v", "destination": "fd00::/129"}],
            "slices.yaml: rules[0].destination: expected a prefix such as fd00::/48, got 'fd00::/129'",
        ),
        (
            [{"slice": "v", "sid": "10.0.0.0/8"}],
            "slices.yaml: rules[0].sid: expected an IPv6 prefix (SRv6 SIDs are IPv6), got '10.0.0.0/8'",
        ),
        (
            [{"slice": "v", "flow_label": [9, 3]}],
            "slices.yaml: rules[0].flow_label: expected [low, high] with 0 <= low <= high <= 0xfffff,"
            " or a list of them, got [9, 3]",
        ),
        ([{"slice": "v", "slice_id": -1}], "slices.yaml: rules[0].slice_id: expected 0..4294967295, got -1"),
        ([{"dscp": 1}], "slices.yaml: rules[0].slice: expected a slice name, got None"),
        ([{"slice": "v"}], "slices.yaml: rules[0]: expected at least one match key"),
        ([{"slice": "v", "dcsp": 1}], "slices.yaml: rules[0].dcsp: unknown key"),
        (["video"], "slices.yaml: rules[0]: expected a mapping with slice and match keys, got 'video'"),
    ],
)
def test_bad_rules_name_the_source_and_the_key(rules: list, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SliceClassifier.from_rules(rules, source="slices.yaml")
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        SliceClassifier.from_rules([{"slice": "v", "dscp": 99}, {"slice": "w", "source": "nope"}], source="f")
    assert [p.split(":")[1].strip() for p in caught.value.problems] == ["rules[0].dscp", "rules[1].source"]


def test_from_file_reads_rules_and_default(tmp_path) -> None:
    path = tmp_path / "slices.yaml"
    path.write_text("default: data\nrules:\n  - {slice: video, dscp: 34}\n  - {slice: egov, dscp: 300}\n")
    with pytest.raises(ConfigError, match=r"slices.yaml: rules\[1\].dscp: expected 0..63, got 300"):
        SliceClassifier.from_file(path)
    path.write_text("default: data\nrules:\n  - {slice: video, dscp: 34}\n")
    classifier = SliceClassifier.from_file(path)
    assert (classifier.classify(ANY, ANY, 34), classifier.classify(ANY, ANY, 0)) == ("video", "data")


# -- the vectorised path gives what the per-packet path gives ----------------------------------

MIXED_RULES = [
    {"slice": "video", "source": ["fd00:1::/64", "fd00:1:0:1::8/125", "192.0.2.0/24"], "dscp": [34, 0]},
    {"slice": "egov", "destination": ["fd00:2::/47", "fd00:3::7/128", "::ffff:10.0.0.0/104"]},
    {"slice": "data", "flow_label": [[100, 200], [0xFFFF0, 0xFFFFF]]},
    {"slice": "video", "slice_id": 1},
    {"slice": "egov", "dscp": 26},
]
INTERESTING = [
    "fd00:1::5",
    "fd00:1:0:1::9",
    "fd00:1:0:1::10",
    "192.0.2.77",
    "192.0.3.1",
    "fd00:2::1",
    "fd00:3:ffff:ffff:ffff:ffff:ffff:ffff",
    "fd00:3::7",
    "fd00:3::8",
    "10.9.9.9",
    "11.0.0.1",
    "::1",
    "::",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(INTERESTING),
            st.sampled_from(INTERESTING),
            st.integers(0, 63),
            st.sampled_from([0, 99, 100, 150, 200, 201, 0xFFFF5, 0xFFFFF]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_classify_arrays_equals_classify(packets) -> None:
    classifier = SliceClassifier.from_rules(MIXED_RULES)
    sources = [a(p[0]) for p in packets]
    destinations = [a(p[1]) for p in packets]
    dscp = np.array([p[2] for p in packets], dtype=np.uint8)
    labels = np.array([p[3] for p in packets], dtype=np.uint32)
    vectorised = classifier.classify_arrays(*split_address(sources), *split_address(destinations), dscp, labels)
    expected = [classifier.classify_index(s, d, p[2], p[3]) for s, d, p in zip(sources, destinations, packets)]
    assert vectorised.tolist() == expected
