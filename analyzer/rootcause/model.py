"""What root-cause inference reads and what it concludes: the contract between the
analyzer (which builds evidence from path windows and topology) and the inference engine
(which knows nothing of windows, HTTP or Prometheus), and the simulation in bench/rootcause.

Component names: a link is "a>b" (directed, the way packets crossed it; `link_name`), a node
is its plain name ("prov1", or a hop address when no name is known). A path's components
are every node and link a probe crossed, source and target included, in order.

Two pseudo-components let ordinary localisation blame the ends of a path:
- "host:<site>" is the first forward component of every path probed from that site's agent
  (its sockets, clock, CPU): when all of an agent's paths degrade while paths towards its
  site stay healthy, the explanation is the host, not a link (kind `probe-host`);
- "service:<target>" is the last forward component of a path whose answers come from a
  user-space responder (a STAMP reflector). ICMPv6 echo is answered by the kernel, so echo
  paths end at the node: STAMP failing while echo to the same site works points at the
  service (kind `reflector-down`).
Pseudo-components appear only in `forward`; `reverse` lists nodes and links only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HINT_KINDS = (
    "link-loss",
    "link-down",
    "node-down",
    "congestion",
    "latency-shift",
    "path-change",
    "slice-isolation",
    "probe-host",
    "reflector-down",
    "one-direction",
    "node-loss",
    "congestion|slice-isolation",
)
# A full link and a starved slice class look alike when the other slices' delay rose through
# the link no more clearly than elsewhere (a loaded probing host slows every path): one hint
# says both, rather than flipping between them from one interval to the next.
CONGESTION_OR_ISOLATION = "congestion|slice-isolation"


def kind_parts(kind: str) -> tuple[str, ...]:
    """The kinds a hint's kind names: one, or the alternatives the evidence left open."""
    return tuple(kind.split("|"))


def link_name(a: str, b: str) -> str:
    return f"{a}>{b}"


@dataclass(frozen=True, slots=True)
class PathEvidence:
    """One probed path over one epoch (an analyzer interval), with its healthy baseline."""

    path_id: str  # unique, e.g. "cnty1a>cnty2b/video/stamp"
    source: str  # the probing agent's site
    target: str  # the target's name
    target_site: str | None  # the site the target sits in, when known
    slice: str
    forward: tuple[str, ...]  # components source -> target (nodes and links, in order)
    reverse: tuple[str, ...] | None  # components target -> source, when known (else: unknown)
    sent: int
    lost: int  # all probes lost this epoch, either direction
    forward_lost: int | None = None  # STAMP stateful reflector: lost on the way out
    reverse_lost: int | None = None  # lost on the way back
    delay_s: float | None = None  # median RTT this epoch (None: nothing came back)
    baseline_delay_s: float | None = None  # median RTT while healthy (None: not learnt yet)
    jitter_s: float | None = None  # PDV/IPDV this epoch
    baseline_jitter_s: float | None = None
    path_changed: bool = False  # the hop-list fingerprint changed this epoch
    delay_delta_s: float | None = None  # RTT step that came with the path change
    previous_forward: tuple[str, ...] | None = None  # components before the change, when known
    previous_reverse: tuple[str, ...] | None = None  # (they name what the traffic left)

    @property
    def loss(self) -> float:
        return self.lost / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class HostHealth:
    """An agent's self-telemetry: bad health blames the probe host, not the network."""

    site: str
    healthy: bool
    reason: str = ""  # e.g. "scheduling lag 2.1 s", "send errors 40/s"


@dataclass(frozen=True, slots=True)
class Epoch:
    """Everything inference sees at once: the paths probed in one interval."""

    paths: tuple[PathEvidence, ...]
    hosts: tuple[HostHealth, ...] = ()
    at_ns: int = 0


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One conclusion: a RootCauseHint without its first/last-seen times."""

    kind: str  # one of HINT_KINDS ("a|b": either, the evidence cannot tell; `kind_parts`)
    suspects: tuple[str, ...]  # one component, or the equivalence class probes cannot split
    slices: tuple[str, ...]  # affected slices
    confidence: float  # 0..1
    evidence: tuple[str, ...] = field(default=())  # plain sentences: which paths, which numbers
