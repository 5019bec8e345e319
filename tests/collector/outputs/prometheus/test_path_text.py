"""The cached text renderer of the per-path families: byte for byte what prometheus_client's
generate_latest writes over the same collector, after every kind of change, and linted clean
by promtool."""

from __future__ import annotations

import random
import subprocess

import pytest
from prometheus_client import generate_latest

from collector.contract.examples import example_window
from collector.contract.records import PathKey
from collector.outputs.prometheus import path_text
from collector.outputs.prometheus.agent import agent_metrics
from collector.outputs.prometheus.state import MetricsState

S = 1_000_000_000
T0 = 1_800_000_000 * S
WINDOW = 10 * S


def window(key: PathKey, seq: int, **fields):
    start = T0 + (seq - 1) * WINDOW
    values = dict(
        start_ns=start,
        end_ns=start + WINDOW,
        target_address=f"fd00:1::{seq:x}",
        sent=10,
        received=8,
        lost_forward=1,
        lost_unknown=1,
        rtt_buckets=(2, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1),
        rtt_sum_ns=1_031_250_007,
        ipdv_mean_abs_ns=12_345,
        pdv_p99_ns=None,
        path_fingerprint="0123456789abcdef",
    )
    return example_window(key, seq, **(values | fields))


KEYS = [
    PathKey("bj-core", "sh-core", "video", "stamp"),
    PathKey("bj-core", "sh-core", "egov", "icmp"),
    PathKey('quote"site', "back\\slash", "new\nline", "stamp"),  # every character that needs escaping
    PathKey("bj-core", "ünïcode-target", "data", "icmp"),
    PathKey("bj-core", "fe80::1%eth0", "data", "icmp"),  # a % in a name
]


def scraped(state: MetricsState) -> tuple[bytes, bytes]:
    """(ours, generate_latest's) of one agent registry at one moment."""
    metrics = agent_metrics(state, process_metrics=False)
    return metrics.text(), generate_latest(metrics.registry)


def test_the_text_is_generate_latests_byte_for_byte_through_changes():
    state = MetricsState()
    metrics = agent_metrics(state, process_metrics=False)

    def same() -> bytes:
        ours = metrics.text()
        assert ours == generate_latest(metrics.registry)
        return ours

    assert b"xnet_probe_sent_total" in same()  # no paths yet: headers only
    state.apply([window(key, 1) for key in KEYS])
    first = same()
    assert b'src="quote\\"site"' in first and b'dst="back\\\\slash"' in first and b'slice="new\\nline"' in first
    # Large counts (Go's exponent form from 1e6 on), a second delay-variation gauge, a new
    # address and fingerprint, and a path whose gauges are absent.
    state.apply(
        [
            window(KEYS[0], 2, sent=2_500_000, received=999_999, pdv_p99_ns=7_000_000, path_fingerprint="feedface"),
            window(KEYS[1], 2, ipdv_mean_abs_ns=None, target_address="fd00:9::1"),
            window(KEYS[2], 2, rtt_sum_ns=3 * S),
        ]
    )
    second = same()
    assert b"} 2.50001e+06\n" in second and b"} 1.000007e+06\n" in second
    # A new path in the middle of the table, and the ones left behind more than three windows go.
    state.apply([window(PathKey("bj-core", "gz-core", "video", "stamp"), 6), window(KEYS[0], 6)])
    third = same()
    assert b"sh-core" in third and b"egov" not in third and b"gz-core" in third


def test_the_template_is_made_again_only_when_paths_come_or_go_or_a_family_outgrows_narrow_values(
    monkeypatch: pytest.MonkeyPatch,
):
    state = MetricsState()
    metrics = agent_metrics(state, process_metrics=False)
    templates, columns = [], []
    real_template, real_columns = path_text.PathFamiliesText._page_template, path_text._count_columns

    def counting_template(self, wide):
        templates.append(wide)
        return real_template(self, wide)

    def counting_columns(totals, buckets):
        columns.append(len(totals))
        return real_columns(totals, buckets)

    monkeypatch.setattr(path_text.PathFamiliesText, "_page_template", counting_template)
    monkeypatch.setattr(path_text, "_count_columns", counting_columns)

    def scrape() -> None:
        assert metrics.text() == generate_latest(metrics.registry)

    state.apply([window(key, 1) for key in KEYS])
    scrape()
    assert templates == [(False,) * 7] and columns == [len(KEYS)]
    scrape()  # nothing changed: the values of the last scrape again
    assert len(templates) == 1 and len(columns) == 1
    state.apply([window(KEYS[3], 2, target_address="fd00:9::9", path_fingerprint="cafe")])
    scrape()  # a value, an address and a fingerprint changed: the same template
    assert len(templates) == 1 and len(columns) == 2
    state.apply([window(KEYS[1], 3, sent=1_000_000)])
    scrape()  # sent reached 1e6: that family is written in Go's exponent form from now on
    assert templates[-1] == (True, *(False,) * 6) and len(templates) == 2
    state.apply([window(PathKey("bj-core", "gz-core", "video", "stamp"), 3)])
    scrape()  # a new path
    assert len(templates) == 3 and columns[-1] == len(KEYS) + 1


def test_a_path_that_takes_anothers_place_with_the_same_values_shows_its_own_labels():
    state = MetricsState(stale_after_windows=1)
    metrics = agent_metrics(state, process_metrics=False)
    state.apply([window(KEYS[0], 1, target_address="fd00::1"), window(KEYS[1], 1, target_address="fd00::1")])
    assert metrics.text() == generate_latest(metrics.registry)
    # KEYS[1] goes, KEYS[4] comes with the same values, address and trace
    state.apply([window(KEYS[0], 3, target_address="fd00::1"), window(KEYS[4], 3, target_address="fd00::1")])
    assert list(state.snapshot.paths) == [KEYS[0], KEYS[4]]
    assert metrics.text() == generate_latest(metrics.registry)


def test_random_changes_are_rendered_as_generate_latest_writes_them():
    """Paths coming, going and coming back, values growing past 1e6 and 2**53, gauges
    appearing and vanishing, addresses and traces changing: every scrape byte for byte."""
    rng = random.Random(18)
    keys = [*KEYS, *(PathKey("s", f"fd00::{i:x}", f"slice-{i % 3}", "stamp") for i in range(8))]
    state = MetricsState()
    metrics = agent_metrics(state, process_metrics=False)

    def count() -> int:
        if rng.random() < 0.05:
            return rng.choice([1_000_000, 2_500_010, 2**53 + 3, 10**17])
        return rng.choice([0, 1, 7, 99_999])

    def nanoseconds() -> int | None:
        return rng.choice([None, 0, 12_345, 1_031_250_007, 10**15 - 1, 10**15, 3 * 10**18])

    changes, wide, last = 0, set(), frozenset()
    for seq in range(1, 60):
        share = rng.choice([0.1, 0.5, 0.9])
        active = [key for key in keys if rng.random() < share]
        fields = [
            dict(
                sent=count(),
                received=count(),
                lost_reverse=count(),
                reordered=count() // 1000,
                rtt_buckets=tuple(count() if rng.random() < 0.2 else 0 for _ in range(13)),
                rtt_sum_ns=rng.choice([0, 4_321_000, 10**15 + 7, 10**16]),
                ipdv_mean_abs_ns=nanoseconds(),
                pdv_p99_ns=nanoseconds(),
                target_address=rng.choice(["fd00::1", "fd00::2", 'odd"address%s']),
                path_fingerprint=rng.choice([None, "feed", "be\\ef"]),
            )
            for _ in active
        ]
        state.apply([window(key, seq, **f) for key, f in zip(active, fields)])
        for _ in range(rng.randint(1, 2)):  # a second scrape: nothing changed
            ours = metrics.text()
            assert ours == generate_latest(metrics.registry), f"scrape at window {seq}"
        changes += last != (last := frozenset(state.snapshot.paths))
        sent = [line.rpartition(b" ")[2] for line in ours.splitlines() if line.startswith(b"xnet_probe_sent_total{")]
        wide.add(any(b"e+" in value for value in sent))
    assert changes > 10 and wide == {True, False}  # paths came and went; counts past 1e6 and not


def test_every_scrape_of_many_paths_is_the_same_as_generate_latest():
    keys = [PathKey("s", f"fd00::{i:x}", f"slice-{i % 4}", ("stamp", "icmp")[i % 2]) for i in range(400)]
    state = MetricsState()
    state.apply([window(k, 1, rtt_sum_ns=i * 1_000_003, sent=i * 4_999) for i, k in enumerate(keys)])
    ours, theirs = scraped(state)
    assert ours == theirs
    assert ours.count(b"\n") > 400 * 24


@pytest.mark.tool("promtool")
def test_promtool_finds_nothing_to_lint_in_the_text():
    state = MetricsState()
    state.apply([window(key, 1) for key in KEYS])
    done = subprocess.run(
        ["promtool", "check", "metrics"],
        input=agent_metrics(state).text(),
        capture_output=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
