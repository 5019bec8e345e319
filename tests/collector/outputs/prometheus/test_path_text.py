"""The cached text renderer of the per-path families: byte for byte what prometheus_client's
generate_latest writes over the same collector, after every kind of change, and linted clean
by promtool."""

from __future__ import annotations

import math
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.utils import floatToGoString

from collector.contract.examples import example_window
from collector.contract.records import PathKey
from collector.outputs.prometheus import path_text
from collector.outputs.prometheus.agent import agent_metrics
from collector.outputs.prometheus.path_text import number
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


def test_a_path_is_rendered_again_only_when_its_totals_changed(monkeypatch: pytest.MonkeyPatch):
    state = MetricsState()
    metrics = agent_metrics(state, process_metrics=False)
    rendered: list[PathKey] = []
    real = path_text._path_lines

    def counting(templates, totals):
        rendered.append(totals.key)
        return real(templates, totals)

    monkeypatch.setattr(path_text, "_path_lines", counting)
    state.apply([window(key, 1) for key in KEYS])
    metrics.text()
    assert set(rendered) == set(KEYS) and len(rendered) == len(KEYS)
    rendered.clear()
    unchanged = metrics.text()
    assert rendered == [] and unchanged == generate_latest(metrics.registry)
    state.apply([window(KEYS[3], 2)])
    assert metrics.text() == generate_latest(metrics.registry)
    assert rendered == [KEYS[3]]


def test_every_scrape_of_many_paths_is_the_same_as_generate_latest():
    keys = [PathKey("s", f"fd00::{i:x}", f"slice-{i % 4}", ("stamp", "icmp")[i % 2]) for i in range(400)]
    state = MetricsState()
    state.apply([window(k, 1, rtt_sum_ns=i * 1_000_003, sent=i * 4_999) for i, k in enumerate(keys)])
    ours, theirs = scraped(state)
    assert ours == theirs
    assert ours.count(b"\n") > 400 * 24


@pytest.mark.parametrize(
    "value",
    [0, 1, 7, 999_999, 1_000_000, 1_000_001, 123_456_789, 2**53 + 1, 10**17, -3, 0.0, 0.001031, 1e-9, 1e-5, 999_999.5]
    + [1e6, 1.5e6, -2.5, -999_999.9, -1e6, -1e7]
    + [math.inf, -math.inf, math.nan],
)
def test_a_number_is_written_as_prometheus_client_writes_it(value: float):
    assert number(value) == floatToGoString(value)


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
