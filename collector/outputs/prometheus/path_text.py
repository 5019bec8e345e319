"""The agent's per-path families in the Prometheus text format (0.0.4), rendered with a cache.

prometheus_client builds a Sample with a label dict for every series of every scrape and
escapes and sorts those labels again each time: at 10,000 targets x 4 slices (25 series a
path) that is about 10 s of CPU per scrape. Here a path's label text is escaped once, and its
lines are kept beside the `PathTotals` they came from: totals are immutable and replaced
when a window is folded in, so a path whose totals object is still the same is not rendered
again, and a changed one costs a few string formats. The bytes are exactly those of
prometheus_client's `generate_latest` over `agent.path_families` (the tests compare them,
labels with quotes, backslashes and newlines included).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from collector.contract.records import PathKey
from collector.outputs.prometheus.state import PathTotals


def _escape(value: str) -> str:
    """A label value as prometheus_client writes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: int | float) -> str:
    """A sample value as prometheus_client writes it (`floatToGoString`), with shortcuts for
    the common cases: below 1e6 Go's format is Python's repr of the float."""
    if type(value) is int:
        if 0 <= value < 1_000_000:
            return f"{value}.0"
    elif type(value) is float and -1e6 < value < 1e6:  # finite: no inf, no NaN
        return repr(value)
    return floatToGoString(value)


def _template(label_text: str) -> str:
    """Label text inside a %-template: a `%` in a name (a scope, `fe80::1%eth0`) stays one."""
    return label_text.replace("%", "%%")


def header(family: Metric) -> str:
    """The HELP and TYPE lines generate_latest writes before a family's samples."""
    name = family.name + "_total" if family.type == "counter" else family.name
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n"


class _PathTemplates:
    """One path's lines with its label text escaped once and %-placeholders where the values
    go: counts as `%d.0` (formatted in C, what `number` writes below 1e6), gauges as `%s`.
    Labels are written sorted by name: `address`, `direction` before `dst`; `fingerprint`,
    `le` between `dst` and `probe`; `type` last."""

    __slots__ = (
        "key",
        "le",
        "sent",
        "received",
        "lost",
        "duplicates",
        "reordered",
        "rtt",
        "ipdv",
        "pdv_p99",
        "info",
        "_info",
        "_wide",
    )

    def __init__(self, key: PathKey, le: tuple[str, ...], count: str = "%d.0") -> None:
        self.key, self.le = key, le
        dst = _template(f'dst="{_escape(key.target)}"')
        rest = _template(f'probe="{_escape(key.kind)}",slice="{_escape(key.slice)}",src="{_escape(key.source)}"')
        base = f"{dst},{rest}"
        self.sent = f"xnet_probe_sent_total{{{base}}} {count}\n"
        self.received = f"xnet_probe_received_total{{{base}}} {count}\n"
        self.lost = "".join(f'xnet_probe_lost_total{{direction="{d}",{base}}} {count}\n' for d in _DIRECTIONS)
        self.duplicates = f"xnet_probe_duplicates_total{{{base}}} {count}\n"
        self.reordered = f"xnet_probe_reordered_total{{{base}}} {count}\n"
        self.rtt = (
            "".join(f'xnet_rtt_seconds_bucket{{{dst},le="{b}",{rest}}} {count}\n' for b in le)
            + f"xnet_rtt_seconds_count{{{base}}} {count}\n"
            + f"xnet_rtt_seconds_sum{{{base}}} %s\n"
        )
        self.ipdv = f'xnet_delay_variation_seconds{{{base},type="ipdv"}} %s\n'
        self.pdv_p99 = f'xnet_delay_variation_seconds{{{base},type="pdv_p99"}} %s\n'
        self.info = f'xnet_path_info{{address="%s",{dst},fingerprint="%s",{rest}}} 1.0\n'
        self._info: tuple[str, str, bytes] = ("", "", b"")  # (address, fingerprint, line) last written
        self._wide: _PathTemplates | None = None

    def wide(self) -> _PathTemplates:
        """The same lines with every count as `%s`, for counts `number` writes otherwise
        (1e6 and above in Go's exponent form); made when a path first needs it."""
        if self._wide is None:
            self._wide = _PathTemplates(self.key, self.le, "%s")
        return self._wide

    def info_line(self, address: str, fingerprint: str) -> bytes:
        last = self._info
        if last[0] != address or last[1] != fingerprint:  # rare: a new address or trace
            line = (self.info % (_escape(address), _escape(fingerprint))).encode()
            last = self._info = (address, fingerprint, line)
        return last[2]


_DIRECTIONS = ("forward", "reverse", "unknown")


@dataclass(slots=True)
class _Cached:
    """One path's templates, and its lines as last rendered from `totals`."""

    templates: _PathTemplates
    totals: PathTotals
    lines: tuple[bytes, ...]


class PathFamiliesText:
    """Renders the per-path families (in `agent.path_families` order) of one snapshot's paths."""

    def __init__(self, families: Iterable[Metric], le: Iterable[str]) -> None:
        # sent, received, lost, duplicates, reordered, rtt, variation, info: _path_lines's order
        self._headers = tuple(header(f).encode() for f in families)
        if len(self._headers) != 8:
            raise ValueError(f"expected the 8 per-path families, got {len(self._headers)}")
        self._le = tuple(le)
        self._paths: dict[PathKey, _Cached] = {}
        self._lock = threading.Lock()  # concurrent scrapes render once each, never interleaved

    def render(self, paths: Mapping[PathKey, PathTotals]) -> list[bytes]:
        """The families' text, in pieces for the caller to join once with what surrounds it."""
        with self._lock:
            cache = self._paths
            rows = []
            found = 0
            for key, totals in paths.items():
                cached = cache.get(key)
                if cached is None:
                    continue
                found += 1
                if cached.totals is not totals:
                    cached.totals, cached.lines = totals, _path_lines(cached.templates, totals)
                rows.append(cached.lines)
            if found != len(paths) or found != len(cache):
                # Paths came or went (rare): the cache is made again in the snapshot's order,
                # so it never outgrows one snapshot.
                # (the paths already cached were brought up to date by the pass above)
                cache = self._paths = {key: cache.get(key) or self._new(key, totals) for key, totals in paths.items()}
                rows = [cached.lines for cached in cache.values()]
        parts = []
        for head, column in zip(self._headers, zip(*rows) if rows else ((),) * len(self._headers)):
            parts.append(head)
            parts += column
        return parts

    def _new(self, key: PathKey, totals: PathTotals) -> _Cached:
        templates = _PathTemplates(key, self._le)
        return _Cached(templates, totals, _path_lines(templates, totals))


def _path_lines(p: _PathTemplates, t: PathTotals) -> tuple[bytes, ...]:
    ints: tuple[int, ...] = (t.sent, t.received, t.lost_forward, t.lost_reverse, t.lost_unknown, t.duplicates)
    ints += (t.reordered, *accumulate(t.rtt_buckets))  # the histogram's buckets are cumulative
    counts: tuple[int | str, ...] = ints
    if not 0 <= min(ints) <= max(ints) < 1_000_000:
        p, counts = p.wide(), tuple(number(n) for n in ints)
    variation = ""
    if t.ipdv_ns is not None:
        variation = p.ipdv % number(t.ipdv_ns / 1e9)
    if t.pdv_p99_ns is not None:
        variation += p.pdv_p99 % number(t.pdv_p99_ns / 1e9)
    # Each chunk encoded on its own: ASCII mostly, so cheap, and the page is joined as bytes once.
    return (
        (p.sent % counts[0]).encode(),
        (p.received % counts[1]).encode(),
        (p.lost % counts[2:5]).encode(),
        (p.duplicates % counts[5]).encode(),
        (p.reordered % counts[6]).encode(),
        (p.rtt % (*counts[7:], counts[-1], number(t.rtt_sum_ns / 1e9))).encode(),  # _count is the +Inf bucket
        variation.encode(),
        p.info_line(t.address, t.fingerprint),
    )
