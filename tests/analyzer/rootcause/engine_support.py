"""Hand-built topologies for the engine's unit tests: routes as node lists, faults as loss
ratios per component, and PathEvidence with the losses those ratios give (rounded, so the
tests are deterministic)."""

from __future__ import annotations

from analyzer.rootcause.model import PathEvidence, link_name

SLICES = ("video", "egov", "data", "best-effort")


def components(nodes: list[str]) -> tuple[str, ...]:
    """Nodes and the links between them, in order: a, a>b, b, ..."""
    out = [nodes[0]]
    for a, b in zip(nodes, nodes[1:]):
        out += [link_name(a, b), b]
    return tuple(out)


def survival(parts, loss: dict[str, float]) -> float:
    kept = 1.0
    for part in parts:
        kept *= 1.0 - loss.get(part, 0.0)
    return kept


def probe(
    nodes: list[str],
    slice_: str = "video",
    loss: dict[str, float] | None = None,
    sent: int = 1000,
    stamp: bool = True,
    split: bool = True,
    service_down: bool = False,
    **extra,
) -> PathEvidence:
    """One path from nodes[0] to nodes[-1]: STAMP (ends at service:<target>) or echo."""
    loss = loss or {}
    source, target = nodes[0], nodes[-1]
    forward = (f"host:{source}",) + components(nodes) + ((f"service:{target}",) if stamp else ())
    reverse = components(list(reversed(nodes)))
    host = f"host:{source}"
    out_kept = survival(forward, loss)
    back_kept = survival(reverse, loss) * (1.0 - loss.get(host, 0.0))
    if stamp and service_down:
        out_kept = 0.0
    forward_lost = round(sent * (1 - out_kept))
    reverse_lost = round((sent - forward_lost) * (1 - back_kept))
    lost = forward_lost + reverse_lost
    known = stamp and split and lost < sent
    return PathEvidence(
        path_id=f"{source}>{target}/{slice_}/{'stamp' if stamp else 'echo'}",
        source=source,
        target=target,
        target_site=target,
        slice=slice_,
        forward=forward,
        reverse=reverse,
        sent=sent,
        lost=lost,
        forward_lost=forward_lost if known else None,
        reverse_lost=reverse_lost if known else None,
        **extra,
    )
