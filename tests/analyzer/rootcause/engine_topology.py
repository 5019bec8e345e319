"""A small tree-shaped extranet for the engine's tests, with routes through the lowest
common ancestor (so the answer to every fault is known by hand):

    c1 ── c2 ── r ── p2 ── b1, b2
    ├── p1 ── a1, a2      └── p3 ── d1, d2
    └── e1

r is a transit router with no sites: p2>r and r>c2 lie on exactly the same paths.
"""

from __future__ import annotations

from tests.analyzer.rootcause.engine_support import SLICES, probe

PARENT = {
    "c2": "c1",
    "r": "c2",
    "p2": "r",
    "p3": "c2",
    "p1": "c1",
    "e1": "c1",
    "a1": "p1",
    "a2": "p1",
    "b1": "p2",
    "b2": "p2",
    "d1": "p3",
    "d2": "p3",
}
SITES = ("a1", "a2", "b1", "b2", "d1", "d2", "e1")


def up(node: str) -> list[str]:
    chain = [node]
    while chain[-1] in PARENT:
        chain.append(PARENT[chain[-1]])
    return chain


def route(source: str, target: str) -> list[str]:
    rise, fall = up(source), up(target)
    common = next(n for n in rise if n in fall)
    return rise[: rise.index(common) + 1] + list(reversed(fall[: fall.index(common)]))


def mesh(slices=SLICES, stamp: bool = True, **kwargs) -> list:
    """Every site probing every other site in every listed slice."""
    return [
        probe(route(s, t), slice_, stamp=stamp, **kwargs) for slice_ in slices for s in SITES for t in SITES if s != t
    ]
