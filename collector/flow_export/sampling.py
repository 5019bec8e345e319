"""Sampling rates of flow exporters: learnt from options records, else configured, else 1.

An exporter that samples 1 packet in N reports N in an options record, in one of several
ways, all read here as "1 in N" (N may be fractional):

- samplingInterval (IE 34; NetFlow v9 SAMPLING_INTERVAL): N itself;
- samplerRandomInterval (IE 50; v9 FLOW_SAMPLER_RANDOM_INTERVAL): N itself;
- samplingPacketInterval / samplingPacketSpace (IE 305/306, PSAMP systematic count-based
  selection, RFC 5476): take `interval` packets, skip `space`, so N = (interval + space) / interval.

When the record names a sampler (samplerId IE 48 or selectorId IE 302, as a scope or as a
field), the rate is kept for that sampler, and data records that name the sampler use it;
the latest rate reported by an (exporter, domain) is used for records that name none. An
exporter that never reports a rate gets the configured default for its address, else 1.
The rate used last per exporter is kept for `xnet_flow_sampling_rate`.
"""

from __future__ import annotations

import json
from pathlib import Path

from collector.flow_export import information_elements as ie
from collector.system.files import write_atomically


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
    """Rates per (exporter, domain) and per (exporter, domain, sampler), and the defaults."""

    def __init__(self, defaults: dict[str, float] | None = None) -> None:
        self.defaults = dict(defaults or {})
        self._domain: dict[tuple[str, int], float] = {}
        self._sampler: dict[tuple[str, int, int], float] = {}
        self.in_use: dict[str, float] = {}  # exporter -> the rate applied to its latest records
        self.changed = False

    def learn(self, exporter: str, domain: int, record: dict[int, int | bytes]) -> float | None:
        """Read an options record; the rate it announced, if any."""
        rate = rate_from_options(record)
        if rate is None:
            return None
        sampler = sampler_of(record)
        if sampler is not None:
            self._sampler[(exporter, domain, sampler)] = rate
        self.changed = self.changed or self._domain.get((exporter, domain)) != rate
        self._domain[(exporter, domain)] = rate
        return rate

    def rate(self, exporter: str, domain: int, sampler: int | None = None) -> float:
        """The 1-in-N rate for records of this exporter and domain (and sampler, if named)."""
        rate = None
        if sampler is not None:
            rate = self._sampler.get((exporter, domain, sampler))
        if rate is None:
            rate = self._domain.get((exporter, domain))
        if rate is None:
            rate = self.defaults.get(exporter, 1.0)
        self.in_use[exporter] = rate
        return rate

    def note_rate(self, exporter: str, rate: float) -> None:
        """A rate that came with the data itself (sFlow samples, IE 34 in data records)."""
        self.in_use[exporter] = rate

    # -- persistence (beside the templates) ------------------------------------------------

    def save(self, path: Path) -> None:
        data = {
            "domains": [[e, d, r] for (e, d), r in self._domain.items()],
            "samplers": [[e, d, s, r] for (e, d, s), r in self._sampler.items()],
        }
        write_atomically(path, json.dumps(data))
        self.changed = False

    def load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            domains = {(str(e), int(d)): float(r) for e, d, r in data["domains"]}
            samplers = {(str(e), int(d), int(s)): float(r) for e, d, s, r in data["samplers"]}
        except (OSError, ValueError, KeyError, TypeError):
            return  # nothing saved, or damaged: exporters send their options again
        self._domain.update(domains)
        self._sampler.update(samplers)
