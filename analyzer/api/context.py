"""What every router of the API serves from: the store and the analyzer's parts beside it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from analyzer.api import models as m
from analyzer.api.probe_runs import ProbeRuns
from analyzer.api.tokens import WriteTokens
from analyzer.declared_topology import DeclaredTopology
from analyzer.exporter import BusLink
from analyzer.slice_history import SliceHistory
from analyzer.store.journal import IntakeJournal
from analyzer.store.memory import WindowStore
from collector.system.loop_errors import LoopErrors


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: WindowStore
    tokens: WriteTokens  # none configured: writes are refused
    clock: Callable[[], int]
    probes: ProbeRuns | None  # runs POST /probe; None: no agent beside this analyzer
    hints: Callable[[], Iterable] | None  # the current root-cause hints; None: inference does not run
    site_names: Mapping[str, str]  # address -> site, keyed by analyzer.traced_links.by_canonical_address
    max_body_bytes: int
    errors: LoopErrors = field(default_factory=LoopErrors)  # the background loops' errors, by component
    journal: IntakeJournal | None = None  # shipments recorded before their 200; None: no state directory
    declared: DeclaredTopology | None = None  # sites' roles and physical links, for the console's map
    history: SliceHistory | None = None  # each slice's verdicts over the last day; None: not kept
    bus_link: Callable[[], BusLink | None] = lambda: None  # the bus intake's connection; None: none

    def current_hints(self) -> list[m.Hint]:
        return [m.Hint.model_validate(h, from_attributes=True) for h in (self.hints() if self.hints else ())]
