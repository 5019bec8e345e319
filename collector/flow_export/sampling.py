"""Sampling rates of flow exporters: learnt from options records, else configured, else 1.

An exporter that samples 1 packet in N reports N in an options record, in one of several
ways, all read here as "1 in N" (N may be fractional):

- samplingInterval (IE 34; NetFlow v9 SAMPLING_INTERVAL): N itself;
- samplerRandomInterval (IE 50; v9 FLOW_SAMPLER_RANDOM_INTERVAL): N itself;
- samplingPacketInterval / samplingPacketSpace (IE 305/306, PSAMP systematic count-based
  selection, RFC 5476): take `interval` packets, skip `space`, so N = (interval + space) / interval.

When the record names a sampler (samplerId IE 48 or selectorId IE 302, as a scope or as a
field), the rate is kept for that sampler, and data records that name the sampler use it;
the latest rate reported by an (exporter, port, domain) is used for records that name none.
Rates are keyed like templates (address, port and domain): a datagram spoofed from the
exporter's address but another port cannot change the rate its records are scaled by. An
exporter that never reports a rate gets the configured default for its address, else 1.
The rate used last per exporter is kept for `xnet_flow_sampling_rate`.

The table holds at most `limit` learnt rates (domains and samplers together); a rate for a
new key beyond it is refused and counted ("sampling-limit"), as a flood of options records
naming ever new samplers would otherwise grow it without end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from collector.flow_export import information_elements as ie
from collector.flow_export.templates import SourceKey, read_bounded
from collector.system.files import write_atomically

DEFAULT_RATE_LIMIT = 10_000
FILE_FORMAT = 2  # 1 had no format key and keyed rates by (exporter, domain)


def rate_from_options(record: dict[int, int | bytes]) -> float | None:
    """The 1-in-N rate an options record announces, or None if it announces none."""

    def number(element: int) -> int | None:
        value = record.get(element)
        return value if isinstance(value, int) else None

    interval, space = number(ie.SAMPLING_PACKET_INTERVAL), number(ie.SAMPLING_PACKET_SPACE)
    if interval and space is not None:
        return (interval + space) / interval
    for element in (ie.SAMPLING_INTERVAL, ie.SAMPLER_RANDOM_INTERVAL):
        value = number(element)
        if value:
            return float(value)
    return None


def sampler_of(record: dict[int, int | bytes]) -> int | None:
    for element in (ie.SELECTOR_ID, ie.SAMPLER_ID):
        value = record.get(element)
        if isinstance(value, int):
            return value
    return None


class SamplingTable:
    """Rates per (exporter, port, domain) and per (exporter, port, domain, sampler), and the defaults."""

    def __init__(self, defaults: dict[str, float] | None = None, *, limit: int = DEFAULT_RATE_LIMIT) -> None:
        self.defaults = dict(defaults or {})
        self.limit = limit
        self._domain: dict[SourceKey, float] = {}
        self._sampler: dict[tuple[str, int, int, int], float] = {}
        self.in_use: dict[str, float] = {}  # exporter -> the rate applied to its latest records
        self.refused = 0  # rates for new keys beyond `limit`
        self.changed = False

    def learn(self, source: SourceKey, record: dict[int, int | bytes]) -> float | None:
        """Read an options record of (exporter, port, domain); the rate it announced, if any."""
        rate = rate_from_options(record)
        if rate is None:
            return None
        sampler = sampler_of(record)
        if sampler is not None:
            self._store(self._sampler, (*source, sampler), rate)
        if self._domain.get(source) != rate and self._store(self._domain, source, rate):
            self.changed = True
        return rate

    def _store(self, table: dict, key: tuple, rate: float) -> bool:
        if key not in table and len(self._domain) + len(self._sampler) >= self.limit:
            self.refused += 1
            return False
        table[key] = rate
        return True

    def rate(self, source: SourceKey, sampler: int | None = None) -> float:
        """The 1-in-N rate for records of this (exporter, port, domain) (and sampler, if named)."""
        rate = None
        if sampler is not None:
            rate = self._sampler.get((*source, sampler))
        if rate is None:
            rate = self._domain.get(source)
        exporter = source[0]
        if rate is None:
            rate = self.defaults.get(exporter, 1.0)
        self.in_use[exporter] = rate
        return rate

    def note_rate(self, exporter: str, rate: float) -> None:
        """A rate that came with the data itself (sFlow samples, IE 34 in data records)."""
        self.in_use[exporter] = rate

    def __len__(self) -> int:
        return len(self._domain) + len(self._sampler)

    # -- persistence (beside the templates): a copy taken under the receiver's lock, written outside it

    def snapshot(self) -> SamplingSnapshot:
        """What to save; marks the table saved (`unsaved` undoes it when the write fails)."""
        self.changed = False
        return SamplingSnapshot(tuple(self._domain.items()), tuple(self._sampler.items()))

    def unsaved(self) -> None:
        self.changed = True

    def load(self, path: Path) -> None:
        try:
            data = json.loads(read_bounded(path))
            if data.get("format") != FILE_FORMAT:
                return  # an older layout (rates keyed without the port): options come again
            domains = {(str(e), int(p), int(d)): float(r) for e, p, d, r in data["domains"]}
            samplers = {(str(e), int(p), int(d), int(s)): float(r) for e, p, d, s, r in data["samplers"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # nothing saved, or damaged: exporters send their options again
        for key, rate in domains.items():
            self._store(self._domain, key, rate)
        for sampler_key, rate in samplers.items():
            self._store(self._sampler, sampler_key, rate)


@dataclass(frozen=True, slots=True)
class SamplingSnapshot:
    """The learnt rates at one moment, immutable so it can be written without the lock."""

    domains: tuple[tuple[SourceKey, float], ...]
    samplers: tuple[tuple[tuple[str, int, int, int], float], ...]

    def write(self, path: Path) -> None:
        data = {
            "format": FILE_FORMAT,
            "domains": [[*key, rate] for key, rate in self.domains],
            "samplers": [[*key, rate] for key, rate in self.samplers],
        }
        write_atomically(path, json.dumps(data))
