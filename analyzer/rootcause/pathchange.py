"""Path changes: which components the rerouted paths left.

A changed path that knows its previous route (`previous_forward` / `previous_reverse`) left
the components of the old route that are not on the new one. Either may be missing alone:
a path whose route changed only on the way back has `previous_reverse` and no
`previous_forward`, and its unchanged forward route counts as its own previous one.
The explanation of a set of changes is the greedy set cover (as in `boolean`) of the
changed paths by those left components: the link that went away is on every path that
moved off it, while the other left components (the rest of an old detour) are on fewer.
Links are tried first and nodes only for changes no link explains: a route moves because
a link failed or its cost changed, and the nodes behind it are left as a consequence.
Components left by exactly the same changed paths form one class, since nothing
separates them.

Changed paths without a previous route in either direction can only be named by their
ends: one diagnosis lists their sources.
"""

from __future__ import annotations

import statistics

from analyzer.rootcause.model import Diagnosis, PathEvidence
from analyzer.rootcause.wording import ambiguity, describe


def path_change_diagnoses(paths: tuple[PathEvidence, ...], excluded_sites) -> list[Diagnosis]:
    changed = [p for p in paths if p.path_changed and p.source not in excluded_sites]
    if not changed:
        return []
    left_by: dict[str, set[int]] = {}
    unknown: list[PathEvidence] = []
    for index, p in enumerate(changed):
        if p.previous_forward is None and p.previous_reverse is None:
            unknown.append(p)
            continue
        # a direction that did not change is its own previous route: only the changed one left anything
        before = set(p.forward if p.previous_forward is None else p.previous_forward)
        before |= set((p.reverse or ()) if p.previous_reverse is None else p.previous_reverse)
        after = set(p.forward) | set(p.reverse or ())
        for name in before - after:
            left_by.setdefault(name, set()).add(index)
    # links first: a reroute follows a link's failure or cost change, nodes are left as a side effect
    links = {name: paths for name, paths in left_by.items() if ">" in name}
    found = _cover(changed, links)
    explained = set().union(*(links[name] for d in found for name in d.suspects)) if found else set()
    rest = {name: paths - explained for name, paths in left_by.items() if name not in links and paths - explained}
    found += _cover(changed, rest)
    if unknown:
        sources = tuple(sorted({p.source for p in unknown}))
        found.append(
            Diagnosis(
                "path-change",
                sources,
                _slices(unknown),
                round(0.5 * ambiguity(len(sources)), 3),
                (
                    f"{len(unknown)} paths from {describe(sources)} changed route (previous route unknown)"
                    + _delay_clause(unknown),
                ),
            )
        )
    return found


def _cover(changed: list[PathEvidence], left_by: dict[str, set[int]]) -> list[Diagnosis]:
    classes: dict[frozenset[int], list[str]] = {}
    for name, indices in left_by.items():
        classes.setdefault(frozenset(indices), []).append(name)
    unexplained = set().union(*left_by.values()) if left_by else set()
    found = []
    while unexplained:
        # ties go to the class more changed paths left: the common cause, not a side effect
        best = min(classes.items(), key=lambda item: (-len(item[0] & unexplained), -len(item[0]), sorted(item[1])[0]))
        covered = best[0] & unexplained
        if not covered:
            break
        unexplained -= covered
        del classes[best[0]]
        names = tuple(sorted(best[1]))
        moved = [changed[i] for i in sorted(best[0])]
        evidence = [f"{len(moved)} paths moved off {describe(names)}" + _delay_clause(moved)]
        if len(names) > 1:
            evidence.append(f"end-to-end probes cannot tell apart: {', '.join(names)}")
        confidence = (1.0 - 0.5 ** len(moved)) * ambiguity(len(names))
        found.append(Diagnosis("path-change", names, _slices(moved), round(confidence, 3), tuple(evidence)))
    return found


def _slices(paths: list[PathEvidence]) -> tuple[str, ...]:
    return tuple(sorted({p.slice for p in paths}))


def _delay_clause(paths: list[PathEvidence]) -> str:
    deltas = [p.delay_delta_s for p in paths if p.delay_delta_s is not None]
    if not deltas:
        return ""
    return f", RTT {statistics.median(deltas) * 1e3:+.1f} ms (median)"
