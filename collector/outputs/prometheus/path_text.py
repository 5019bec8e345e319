"""The agent's per-path families in the Prometheus text format (0.0.4), rendered column by column.

prometheus_client builds a Sample with a label dict for every series of every scrape and
escapes and sorts those labels again each time: at 10,000 targets x 4 slices (25 series a
path) that is about 10 s of CPU per scrape. Here the page is one bytes %-template holding
every path's label text, escaped once, with a placeholder where each value goes; a scrape
gathers the values of all paths column by column (itertools over the totals, in C) and fills
the template with one `%`: about a million values formatted without a Python call each.

The template is made again only when paths come or go, or when a column of values comes to
need text or stops needing it: a count from 1e6 on is written in Go's exponent form, which
`%d.0` cannot write, so its column's values go in as text (`sample_values.count_texts`, in
bulk). The delay-variation lines, present or absent with their values, and the path-info
lines, which change with an address or a trace, are made apart.
A scrape with the same paths mapping as the last one reuses its values. The bytes are
exactly those of prometheus_client's `generate_latest` over `agent.path_families` (the tests
compare them, labels with quotes, backslashes, newlines and `%` included).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress, cycle, repeat
from operator import attrgetter, is_not, mul, truediv

from prometheus_client.metrics_core import Metric

from collector.contract.records import PathKey
from collector.outputs.prometheus.sample_values import EXPONENT_FROM, count_texts, value_texts
from collector.outputs.prometheus.state import PathTotals


def _escape(value: str) -> str:
    """A label value as prometheus_client writes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def header(family: Metric) -> str:
    """The HELP and TYPE lines generate_latest writes before a family's samples."""
    name = family.name + "_total" if family.type == "counter" else family.name
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n"


def _literal(text: bytes) -> bytes:
    """Text inside a %-template: a `%` in a name (a scope, `fe80::1%eth0`) stays one."""
    return text.replace(b"%", b"%%")


# The values the counts families take, column by column, each for all paths: a line's value
# comes from one of them. The RTT sums are floats, the others counts.
_SENT, _RECEIVED, _LOST, _DUPLICATES, _REORDERED, _RTT_COUNTS, _RTT_SUMS = range(7)
_DIRECTIONS = (b"forward", b"reverse", b"unknown")


class _Family:
    """One counts family's lines for a path: each line's text before the path's `dst` label,
    between it and the rest (labels are written sorted by name), and the column its value
    comes from."""

    def __init__(self, lines: Sequence[tuple[bytes, bytes, int]]) -> None:
        self.lines = tuple(lines)
        self.values_per_path = len(self.lines)

    def meta(self, wide: Sequence[bool]) -> bytes:
        """A path's lines as a template of the page template: `%s` for the two label pieces,
        and where the page template will take the values `%%d.0` (counts) or `%%a` (floats:
        their repr), or `%%s` for text when the column has values `number` writes otherwise."""
        return b"".join(
            before + b"%s" + middle + b"%s} %%" + _placeholder(wide, column) + b"\n"
            for before, middle, column in self.lines
        )


def _placeholder(wide: Sequence[bool], column: int) -> bytes:
    return b"s" if wide[column] else b"a" if column == _RTT_SUMS else b"d.0"


def _simple(name: bytes, column: int) -> _Family:
    return _Family([(name + b"{", b",", column)])


class PathFamiliesText:
    """Renders the per-path families (in `agent.path_families` order) of one snapshot's paths."""

    def __init__(self, families: Iterable[Metric], le: Iterable[str]) -> None:
        # sent, received, lost, duplicates, reordered, rtt, variation, info
        self._headers = tuple(header(f).encode() for f in families)
        if len(self._headers) != 8:
            raise ValueError(f"expected the 8 per-path families, got {len(self._headers)}")
        self._le = tuple(le)
        self._counts = (
            _simple(b"xnet_probe_sent_total", _SENT),
            _simple(b"xnet_probe_received_total", _RECEIVED),
            _Family([(b'xnet_probe_lost_total{direction="' + d + b'",', b",", _LOST) for d in _DIRECTIONS]),
            _simple(b"xnet_probe_duplicates_total", _DUPLICATES),
            _simple(b"xnet_probe_reordered_total", _REORDERED),
            _Family(
                [(b"xnet_rtt_seconds_bucket{", b',le="' + b.encode() + b'",', _RTT_COUNTS) for b in self._le]
                + [(b"xnet_rtt_seconds_count{", b",", _RTT_COUNTS), (b"xnet_rtt_seconds_sum{", b",", _RTT_SUMS)]
            ),
        )
        self._lock = threading.Lock()  # concurrent scrapes render once each, never interleaved
        self._labels: dict[PathKey, _Labels] = {}
        self._keys: tuple[PathKey, ...] = ()
        self._pairs: list[_Pair] = []  # the labels of `_keys`, in their order
        self._template_pairs: list[_Pair] = []  # the same inside %-templates
        self._page: bytes | None = None  # the page template of `_keys`, `_wide`
        self._wide: tuple[bool, ...] = ()
        self._variation = _Variation()
        self._info = _Info()
        self._last: tuple[Mapping[PathKey, PathTotals], list[tuple]] | None = None  # paths, their values

    def page(self, paths: Mapping[PathKey, PathTotals], before: bytes = b"", after: bytes = b"") -> bytes:
        """`before`, the families' text, then `after`: the whole page in one piece (~100 MB
        at 40,000 paths: written once, never copied again)."""
        with self._lock:
            keys = tuple(paths)
            if keys != self._keys:
                self._set_paths(keys)
            last = self._last
            if last is not None and last[0] is paths:
                values = last[1]
            else:
                values = self._values(paths)
                self._last = (paths, values)
            assert self._page is not None
            return self._page % tuple(chain((before,), *values, (after,)))

    def _set_paths(self, keys: tuple[PathKey, ...]) -> None:
        known = self._labels
        labels = self._labels = {key: known.get(key) or _Labels.of(key) for key in keys}
        self._pairs = [path.pair for path in labels.values()]
        self._template_pairs = [path.template_pair for path in labels.values()]
        self._keys, self._page, self._last = keys, None, None
        self._variation.forget()
        self._info.forget()

    def _values(self, paths: Mapping[PathKey, PathTotals]) -> list[tuple]:
        """What the page template takes between `before` and `after`, in pieces."""
        totals = tuple(paths.values())
        columns = _count_columns(totals, len(self._le))
        wide = _wide_columns(columns)
        if self._page is None or wide != self._wide:
            self._page, self._wide = self._page_template(wide), wide
        if any(wide):
            columns = _written_wide(columns, wide)
        variation = self._variation.text(totals, self._template_pairs, self._headers[6])
        info = self._info.text(totals, self._pairs, self._headers[7])
        return [*columns, (variation, info)]

    def _page_template(self, wide: tuple[bool, ...]) -> bytes:
        """The page as a %-template: `before`, every counts family's header and lines with
        their values' placeholders, the variation and info text, `after` (each a `%s`)."""
        pairs = self._template_pairs
        meta = [b"%%s"]
        args: list[Iterable[bytes]] = []
        for family, head in zip(self._counts, self._headers):
            meta += (b"%s", family.meta(wide) * len(pairs))
            args += ((_literal(head),), chain.from_iterable(map(mul, pairs, repeat(family.values_per_path))))
        meta.append(b"%%s%%s%%s")
        return b"".join(meta) % tuple(chain.from_iterable(args))


_Pair = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class _Labels:
    """A path's label text, escaped and UTF-8, in two pieces: `dst`, and the labels after it
    (`le` goes between them); as they are, and inside %-templates."""

    pair: _Pair
    template_pair: _Pair

    @classmethod
    def of(cls, key: PathKey) -> _Labels:
        dst = f'dst="{_escape(key.target)}"'.encode()
        rest = f'probe="{_escape(key.kind)}",slice="{_escape(key.slice)}",src="{_escape(key.source)}"'.encode()
        return cls((dst, rest), (_literal(dst), _literal(rest)))


_GET_SENT, _GET_RECEIVED = attrgetter("sent"), attrgetter("received")
_GET_LOST = attrgetter("lost_forward", "lost_reverse", "lost_unknown")
_GET_DUPLICATES, _GET_REORDERED = attrgetter("duplicates"), attrgetter("reordered")
_GET_BUCKETS, _GET_RTT_SUM = attrgetter("rtt_buckets"), attrgetter("rtt_sum_ns")
_GET_VARIATION = attrgetter("ipdv_ns", "pdv_p99_ns")
_GET_ADDRESS, _GET_FINGERPRINT = attrgetter("address"), attrgetter("fingerprint")


def _count_columns(totals: Sequence[PathTotals], buckets: int) -> list[tuple]:
    """The counts families' values in the page's order, each family's for all paths: the
    columns up to `_RTT_COUNTS`, where each path's RTT counts are followed by its sum."""
    # A 0 after the buckets makes accumulate's last sum the +Inf bucket again: the _count line.
    cumulative = map(accumulate, map(chain, map(_GET_BUCKETS, totals), repeat((0,))))
    sums = zip(map(truediv, map(_GET_RTT_SUM, totals), repeat(1e9)))
    rtt = tuple(chain.from_iterable(map(chain, cumulative, sums)))
    if len(rtt) != len(totals) * (buckets + 2):
        raise ValueError(f"expected {buckets} RTT buckets a path")
    return [
        tuple(map(_GET_SENT, totals)),
        tuple(map(_GET_RECEIVED, totals)),
        tuple(chain.from_iterable(map(_GET_LOST, totals))),
        tuple(map(_GET_DUPLICATES, totals)),
        tuple(map(_GET_REORDERED, totals)),
        rtt,
    ]


def _narrow(values: Sequence[int | float]) -> bool:
    """Whether `%d.0` (counts) and `%a` (floats) write every value as `number` does."""
    return not values or (max(values) < EXPONENT_FROM and min(values) >= 0)  # max first: once wide, wide


def _wide_columns(columns: list[tuple]) -> tuple[bool, ...]:
    """Which columns hold a value `number` writes otherwise than `%d.0` or `%a` would."""
    wide = tuple(not _narrow(values) for values in columns[:_RTT_COUNTS])
    rtt = columns[_RTT_COUNTS]
    if _narrow(rtt):
        return (*wide, False, False)
    counts, sums = _split_rtt(rtt, len(columns[_SENT]))
    if _narrow(sums):
        return (*wide, True, False)  # then the counts are what is not narrow
    return (*wide, not _narrow(counts), True)


def _split_rtt(rtt: tuple, paths: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Each path's RTT counts apart from its RTT sum, the last of its values."""
    per_path = len(rtt) // paths
    counts = tuple(compress(rtt, cycle((True,) * (per_path - 1) + (False,))))
    return counts, rtt[per_path - 1 :: per_path]


def _written_wide(columns: list[tuple], wide: tuple[bool, ...]) -> list[tuple]:
    """`columns` with those of `wide` written as `number` writes them, as bytes."""
    paths = len(columns[_SENT])  # not 0: no column of no values is wide
    rtt_counts, rtt_sums = _split_rtt(columns[_RTT_COUNTS], paths)
    counts = [*columns[:_RTT_COUNTS], rtt_counts]
    texts = count_texts(chain.from_iterable(column for column, w in zip(counts, wide) if w))
    written: list[tuple] = [tuple(map(texts.__getitem__, column)) if w else column for column, w in zip(counts, wide)]
    sums = value_texts(rtt_sums) if wide[_RTT_SUMS] else rtt_sums
    rows = zip(*[iter(written[_RTT_COUNTS])] * (len(rtt_counts) // paths))  # each path's counts
    written[_RTT_COUNTS] = tuple(chain.from_iterable(map(chain, rows, zip(sums))))
    return written


class _Variation:
    """The delay-variation family: a path's ipdv and pdv_p99 lines each present only when
    its window had the value, so its template follows which values are present."""

    def __init__(self) -> None:
        self._key: tuple[tuple[bool, ...], bool] | None = None  # (present, narrow) of `_template`
        self._template = b""

    def forget(self) -> None:
        self._key = None

    def text(self, totals: Sequence[PathTotals], template_pairs: list[_Pair], head: bytes) -> bytes:
        flat = tuple(chain.from_iterable(map(_GET_VARIATION, totals)))  # ipdv, pdv_p99 of each path
        present = tuple(map(is_not, flat, repeat(None)))
        values: tuple = tuple(map(truediv, compress(flat, present), repeat(1e9)))
        narrow = not values or (min(values) > -EXPONENT_FROM and max(values) < EXPONENT_FROM)  # from ints: finite
        if (present, narrow) != self._key:
            value = b"%%a\n" if narrow else b"%%s\n"
            kinds = (
                b'xnet_delay_variation_seconds{%s,%s,type="ipdv"} ' + value,
                b'xnet_delay_variation_seconds{%s,%s,type="pdv_p99"} ' + value,
            )
            lines = compress(cycle(kinds), present)
            labels = compress(chain.from_iterable(zip(template_pairs, template_pairs)), present)
            meta = b"%s" + b"".join(lines)
            self._template = meta % (_literal(head), *chain.from_iterable(labels))
            self._key = (present, narrow)
        return self._template % (values if narrow else value_texts(values))


class _Info:
    """The path-info family: each path's line holds its address and trace fingerprint, which
    seldom change; the family's text is kept until one does."""

    _LINE = b'xnet_path_info{address="%s",%s,fingerprint="%s",%s} 1.0\n'

    def __init__(self) -> None:
        self._key: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # addresses, fingerprints
        self._text = b""

    def forget(self) -> None:
        self._key = None

    def text(self, totals: Sequence[PathTotals], pairs: list[_Pair], head: bytes) -> bytes:
        key = (tuple(map(_GET_ADDRESS, totals)), tuple(map(_GET_FINGERPRINT, totals)))
        if key != self._key:
            values = [
                (_escape(address).encode(), dst, _escape(fingerprint).encode(), rest)
                for address, fingerprint, (dst, rest) in zip(*key, pairs)
            ]
            self._text = head + (self._LINE * len(values)) % tuple(chain.from_iterable(values))
            self._key = key
        return self._text
