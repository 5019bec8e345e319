"""Traffic -> slice: ordered rules over addresses, DSCP, flow label, SRv6 SID and slice ID.

A rule names a slice and one or more match keys; every key of a rule must match (AND) and
the first rule that matches wins; traffic no rule matches goes to the default slice.

    default: best-effort
    rules:
      - {slice: video, slice_id: 1}                   # the Hop-by-Hop slice-ID option
      - {slice: egov, sid: ["fd00:5::/48"]}           # SRv6 locator of the active segment
      - {slice: data, destination: ["fd00:10::/32"], dscp: [18, 20]}
      - {slice: video, flow_label: [0x10000, 0x1ffff]}

Keys: `source` / `destination` (prefixes, netaddr IPSet; IPv4 prefixes match IPv4 traffic,
which reaches the classifier as IPv4-mapped ::ffff:a.b.c.d), `dscp` (0..63, one or a
list), `flow_label` ([low, high], or a list of them), `sid` (IPv6 prefixes matched against
the active segment of an SRv6 packet), `slice_id` (the 32-bit ID of the Hop-by-Hop option,
one or a list).

SID rules follow the longest-prefix rule of routing: a rule's `sid` matches only when the
longest of all rules' SID prefixes containing the active segment is one of its own, so a
/64 of one slice inside another slice's /48 locator wins whatever the order.

Everything is compiled once: prefixes become sorted, merged integer ranges (bisect per
packet, numpy.searchsorted in `classify_arrays`), DSCP sets a 64-bit mask, and a
classifier with DSCP rules only (the default) is a 64-entry table.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from netaddr import IPNetwork, IPSet
from netaddr.core import AddrFormatError

from collector.contract.slice_catalog import DEFAULT_SLICES
from collector.system.config_files import ConfigError, load_yaml, read_config_text

MATCH_KEYS = ("source", "destination", "dscp", "flow_label", "sid", "slice_id")
MAX_FLOW_LABEL = 0xFFFFF
MAX_SLICE_ID = 0xFFFFFFFF
_IPV4_MAPPED = 0xFFFF << 32
_LOW64 = (1 << 64) - 1


class AddressRanges:
    """A set of IPv6 addresses (as 128-bit integers) kept as sorted, disjoint ranges."""

    __slots__ = ("starts", "ends", "_wide", "_narrow")

    def __init__(self, ip_set: IPSet) -> None:
        spans = []
        for cidr in ip_set.iter_cidrs():
            first, last = int(cidr.first), int(cidr.last)
            if cidr.version == 4:  # IPv4 traffic arrives IPv4-mapped
                first, last = first | _IPV4_MAPPED, last | _IPV4_MAPPED
            spans.append((first, last))
        starts: list[int] = []
        ends: list[int] = []
        # Mapping IPv4 into the IPv6 space can break IPSet's order and overlap its IPv6 ranges.
        for first, last in sorted(spans):
            if starts and first <= ends[-1] + 1:
                ends[-1] = max(ends[-1], last)
            else:
                starts.append(first)
                ends.append(last)
        self.starts = starts
        self.ends = ends
        self._wide: tuple[np.ndarray, np.ndarray] | None = None
        self._narrow: list[tuple[int, int, int]] = []

    def __contains__(self, address: int) -> bool:
        index = bisect.bisect_right(self.starts, address) - 1
        return index >= 0 and address <= self.ends[index]

    def contains_arrays(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        """Membership for many addresses given as their top and bottom 64 bits (uint64).

        Whole /64s are looked up by `searchsorted` on the top half; a range's partial /64s
        at either end (prefixes longer than /64, IPv4-mapped ones) are few and are checked
        one by one."""
        wide_starts, wide_ends = self._wide if self._wide is not None else self._split()
        if len(wide_starts):
            index = np.searchsorted(wide_starts, high, side="right") - 1
            inside = (index >= 0) & (high <= wide_ends[np.maximum(index, 0)])
        else:
            inside = np.zeros(len(high), dtype=bool)
        for top, first, last in self._narrow:
            inside |= (high == np.uint64(top)) & (low >= np.uint64(first)) & (low <= np.uint64(last))
        return inside

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        wide_starts, wide_ends, narrow = [], [], []
        for start, end in zip(self.starts, self.ends):
            first_top, last_top = start >> 64, end >> 64
            if start & _LOW64:  # begins inside a /64
                narrow.append((first_top, start & _LOW64, end & _LOW64 if last_top == first_top else _LOW64))
                first_top += 1
            if last_top >= first_top and (end & _LOW64) != _LOW64:  # ends inside a /64
                narrow.append((last_top, 0, end & _LOW64))
                last_top -= 1
            if last_top >= first_top:
                wide_starts.append(first_top)
                wide_ends.append(last_top)
        self._wide = (np.array(wide_starts, dtype=np.uint64), np.array(wide_ends, dtype=np.uint64))
        self._narrow = narrow
        return self._wide


@dataclass(frozen=True, slots=True)
class _Rule:
    slice_index: int
    source: AddressRanges | None
    destination: AddressRanges | None
    dscp_mask: int | None  # bit d set: DSCP d matches
    flow_labels: tuple[tuple[int, int], ...] | None
    sid: bool  # matches when this rule owns the longest SID prefix of the active segment
    slice_ids: frozenset[int] | None


class SliceClassifier:
    """Maps a packet's (or a flow's) header fields to a slice name. Build it with
    `default()`, `from_rules()` or `from_file()`; `classify` is the per-packet call,
    `classify_arrays` the vectorised one for packets without SRH or slice-ID option."""

    __slots__ = ("names", "default_name", "default_index", "_rules", "_dscp_table", "_sid_lengths", "_sid_owner")

    def __init__(
        self,
        names: tuple[str, ...],
        default_name: str,
        rules: tuple[_Rule, ...],
        sid_prefixes: Sequence[tuple[IPNetwork, int]] = (),
    ) -> None:
        self.names = names
        self.default_name = default_name
        self.default_index = names.index(default_name)
        self._rules = rules
        self._dscp_table = self._dscp_only_table(names, default_name, rules)
        # Longest-prefix match of the active segment: one dict lookup per distinct length.
        owner: dict[tuple[int, int], int] = {}
        for network, rule_index in sid_prefixes:
            length = network.prefixlen
            owner.setdefault((length, int(network.first) >> (128 - length)), rule_index)
        self._sid_owner = owner
        self._sid_lengths = tuple(sorted({length for length, _ in owner}, reverse=True))

    @staticmethod
    def _dscp_only_table(names, default_name, rules) -> tuple[str, ...] | None:
        if any(r.source or r.destination or r.flow_labels or r.sid or r.slice_ids is not None for r in rules):
            return None
        table = []
        for dscp in range(64):
            match = next((r for r in rules if r.dscp_mask is None or (r.dscp_mask >> dscp) & 1), None)
            table.append(names[match.slice_index] if match else default_name)
        return tuple(table)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def default(cls) -> SliceClassifier:
        """The catalogue's DSCP rules (collector/contract/slice_catalog.py); any other DSCP is best effort."""
        rules = [{"slice": s.name, "dscp": s.dscp} for s in DEFAULT_SLICES if s.name != "best-effort"]
        return cls.from_rules(
            rules,
            default="best-effort",
            source="collector/contract/slice_catalog.py",
            names=tuple(s.name for s in DEFAULT_SLICES),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> SliceClassifier:
        """A YAML file with `rules:` (a list) and optionally `default:` (a slice name)."""
        source = str(path)
        data = load_yaml(read_config_text(Path(path)), source)
        if not isinstance(data, dict):
            raise ConfigError([f"{source}: expected a mapping with rules (a list) and default (a slice name)"])
        unknown = sorted(set(data) - {"rules", "default"})
        if unknown:
            raise ConfigError([f"{source}: {key}: unknown key (keys here are: rules, default)" for key in unknown])
        default = data.get("default", "best-effort")
        if not isinstance(default, str) or not default:
            raise ConfigError([f"{source}: default: expected a slice name, got {default!r}"])
        return cls.from_rules(data.get("rules"), default=default, source=source)

    @classmethod
    def from_rules(
        cls,
        rules: object,
        *,
        default: str = "best-effort",
        source: str = "<rules>",
        names: tuple[str, ...] | None = None,
    ) -> SliceClassifier:
        """Compiles `rules` (see the module docstring). Every problem is reported at once as
        `SOURCE: rules[I].KEY: what was expected`, in a ConfigError."""
        if not isinstance(rules, list):
            raise ConfigError([f"{source}: rules: expected a list of rules, got {_shown(rules)}"])
        problems: list[str] = []
        all_names: list[str] = list(names or ())
        compiled: list[_Rule] = []
        sid_prefixes: list[tuple[IPNetwork, int]] = []
        for position, rule in enumerate(rules):
            where = f"{source}: rules[{position}]"
            if not isinstance(rule, dict):
                problems.append(f"{where}: expected a mapping with slice and match keys, got {_shown(rule)}")
                continue
            errors_before = len(problems)
            name = rule.get("slice")
            if not isinstance(name, str) or not name:
                problems.append(f"{where}.slice: expected a slice name, got {_shown(name)}")
            for key in rule:
                if key != "slice" and key not in MATCH_KEYS:
                    problems.append(f"{where}.{key}: unknown key (match keys are: {', '.join(MATCH_KEYS)})")
            if not any(key in rule for key in MATCH_KEYS):
                problems.append(f"{where}: expected at least one match key ({', '.join(MATCH_KEYS)})")
            source_ranges = _prefixes(rule, "source", where, problems)
            destination_ranges = _prefixes(rule, "destination", where, problems)
            dscps = _integers(rule, "dscp", 63, where, problems)
            flow_labels = _flow_label_ranges(rule, where, problems)
            sids = _sid_networks(rule, where, problems)
            slice_ids = _integers(rule, "slice_id", MAX_SLICE_ID, where, problems)
            if len(problems) > errors_before or not isinstance(name, str):
                continue
            if name not in all_names:
                all_names.append(name)
            index = len(compiled)
            sid_prefixes.extend((network, index) for network in sids or ())
            compiled.append(
                _Rule(
                    slice_index=all_names.index(name),
                    source=source_ranges,
                    destination=destination_ranges,
                    dscp_mask=sum(1 << d for d in dscps) if dscps is not None else None,
                    flow_labels=flow_labels,
                    sid=sids is not None,
                    slice_ids=frozenset(slice_ids) if slice_ids is not None else None,
                )
            )
        if problems:
            raise ConfigError(problems)
        if default not in all_names:
            all_names.append(default)
        return cls(tuple(all_names), default, tuple(compiled), sid_prefixes)

    # -- classification ----------------------------------------------------------------------

    def classify(
        self,
        src: bytes,
        dst: bytes,
        dscp: int,
        flow_label: int = 0,
        active_sid: bytes | None = None,
        slice_id: int | None = None,
    ) -> str:
        """The slice of one packet. `src`/`dst` are 16 octets (IPv4 as IPv4-mapped)."""
        table = self._dscp_table
        if table is not None:
            return table[dscp]
        return self.names[self.classify_index(src, dst, dscp, flow_label, active_sid, slice_id)]

    def classify_index(
        self,
        src: bytes,
        dst: bytes,
        dscp: int,
        flow_label: int = 0,
        active_sid: bytes | None = None,
        slice_id: int | None = None,
    ) -> int:
        """As `classify`, but the index of the slice in `names`."""
        sid_rule = self._sid_rule(active_sid) if active_sid is not None and self._sid_owner else -1
        src_int = dst_int = None  # converted only if a rule looks at addresses
        for index, rule in enumerate(self._rules):
            if rule.dscp_mask is not None and not (rule.dscp_mask >> dscp) & 1:
                continue
            if rule.slice_ids is not None and slice_id not in rule.slice_ids:
                continue
            if rule.sid and sid_rule != index:
                continue
            if rule.flow_labels is not None and not any(lo <= flow_label <= hi for lo, hi in rule.flow_labels):
                continue
            if rule.source is not None:
                if src_int is None:
                    src_int = int.from_bytes(src, "big")
                if src_int not in rule.source:
                    continue
            if rule.destination is not None:
                if dst_int is None:
                    dst_int = int.from_bytes(dst, "big")
                if dst_int not in rule.destination:
                    continue
            return rule.slice_index
        return self.default_index

    def _sid_rule(self, active_sid: bytes) -> int:
        value = int.from_bytes(active_sid, "big")
        owner = self._sid_owner
        for length in self._sid_lengths:
            rule = owner.get((length, value >> (128 - length)))
            if rule is not None:
                return rule
        return -1

    def classify_arrays(
        self,
        src_high: np.ndarray,
        src_low: np.ndarray,
        dst_high: np.ndarray,
        dst_low: np.ndarray,
        dscp: np.ndarray,
        flow_label: np.ndarray,
    ) -> np.ndarray:
        """Slice indexes (into `names`) for many packets that carry no SRH and no slice-ID
        option (so `sid` and `slice_id` rules cannot match them). Addresses are split into
        their top and bottom 64 bits (uint64 arrays); gives what `classify_index` gives."""
        count = len(dscp)
        result = np.full(count, self.default_index, dtype=np.int16)
        # Walk the rules backwards so that an earlier matching rule overwrites a later one.
        for rule in reversed(self._rules):
            if rule.sid or rule.slice_ids is not None:
                continue
            match = np.ones(count, dtype=bool)
            if rule.dscp_mask is not None:
                table = np.array([(rule.dscp_mask >> d) & 1 for d in range(64)], dtype=bool)
                match &= table[dscp]
            if rule.flow_labels is not None:
                labels = np.zeros(count, dtype=bool)
                for lo, hi in rule.flow_labels:
                    labels |= (flow_label >= lo) & (flow_label <= hi)
                match &= labels
            if rule.source is not None:
                match &= rule.source.contains_arrays(src_high, src_low)
            if rule.destination is not None:
                match &= rule.destination.contains_arrays(dst_high, dst_low)
            result[match] = rule.slice_index
        return result


# -- rule validation: each helper appends "WHERE.KEY: expected ..." to problems -------------


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    if isinstance(value, list) and len(text) > 60:
        return "a list"
    return text if len(text) <= 60 else text[:57] + "..."


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _integers(rule: dict, key: str, maximum: int, where: str, problems: list[str]) -> list[int] | None:
    if key not in rule:
        return None
    values = _as_list(rule[key])
    if not values:
        problems.append(f"{where}.{key}: expected 0..{maximum} or a non-empty list of them, got an empty list")
    for value in values:
        if not _is_int(value) or not 0 <= value <= maximum:
            problems.append(f"{where}.{key}: expected 0..{maximum}, got {_shown(value)}")
    return values


def _flow_label_ranges(rule: dict, where: str, problems: list[str]) -> tuple[tuple[int, int], ...] | None:
    if "flow_label" not in rule:
        return None
    value = rule["flow_label"]
    # [low, high] is one range; a list of pairs (or single labels) is several.
    entries = [value] if _is_pair(value) else _as_list(value)
    ranges = []
    expected = f"expected [low, high] with 0 <= low <= high <= {MAX_FLOW_LABEL:#x}, or a list of them"
    if not entries:
        problems.append(f"{where}.flow_label: {expected}, got an empty list")
    for entry in entries:
        low, high = (entry, entry) if _is_int(entry) else (entry if _is_pair(entry) else (None, None))
        if not (_is_int(low) and _is_int(high) and 0 <= low <= high <= MAX_FLOW_LABEL):
            problems.append(f"{where}.flow_label: {expected}, got {_shown(entry)}")
            continue
        ranges.append((low, high))
    return tuple(ranges)


def _is_pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)


def _networks(
    rule: dict, key: str, where: str, problems: list[str], *, ipv6_only: bool = False
) -> list[IPNetwork] | None:
    if key not in rule:
        return None
    values = _as_list(rule[key])
    if not values:
        problems.append(
            f"{where}.{key}: expected a prefix such as fd00::/48 or a non-empty list of them, got an empty list"
        )
    networks = []
    for value in values:
        try:
            if not isinstance(value, str):
                raise TypeError
            network = IPNetwork(value)
        except (AddrFormatError, ValueError, TypeError):
            problems.append(f"{where}.{key}: expected a prefix such as fd00::/48, got {_shown(value)}")
            continue
        if ipv6_only and network.version != 6:
            problems.append(f"{where}.{key}: expected an IPv6 prefix (SRv6 SIDs are IPv6), got {value!r}")
            continue
        networks.append(network.cidr)
    return networks


def _prefixes(rule: dict, key: str, where: str, problems: list[str]) -> AddressRanges | None:
    networks = _networks(rule, key, where, problems)
    return AddressRanges(IPSet(networks)) if networks is not None else None


def _sid_networks(rule: dict, where: str, problems: list[str]) -> list[IPNetwork] | None:
    return _networks(rule, "sid", where, problems, ipv6_only=True)


def split_address(addresses: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """16-octet addresses -> (top 64 bits, bottom 64 bits) as uint64 arrays."""
    raw = np.frombuffer(b"".join(addresses), dtype=">u8").reshape(-1, 2)
    return raw[:, 0].astype(np.uint64), raw[:, 1].astype(np.uint64)
