"""GET /map: the extranet for the console's map: declared sites (with their roles) and
physical links, merged with what traced paths show (hops named as the hints name them), each
link with the paths that cross it in either direction."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from analyzer.api import models as m
from analyzer.api.context import ApiContext
from analyzer.traced_links import hop_names
from analyzer.traced_topology import TracedTopology


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    store = api.store

    @routes.get("/map", response_model=m.MapResponse, summary="Declared and traced sites and physical links")
    def get_map() -> m.MapResponse:
        names = hop_names(api.site_names, store.latest_windows(), {a.site for a in store.agents()})
        traced = TracedTopology.from_observations(store.observations(), names)
        declared = api.declared
        nodes: dict[str, m.MapNode] = {}
        for site, role in declared.roles if declared else ():
            nodes[site] = m.MapNode(id=site, role=role, declared=True, traced=False)
        for node, traced_role in traced.nodes.items():
            known = nodes.get(node)
            nodes[node] = m.MapNode(
                id=node, role=known.role if known else traced_role, declared=known is not None, traced=True
            )
        links: dict[tuple[str, str], m.MapLink] = {}
        for a, b in declared.links if declared else ():
            end_a, end_b = sorted((a, b))
            links[(end_a, end_b)] = m.MapLink(a=end_a, b=end_b, declared=True, hidden_hops=0, paths=[])
        for link, uses in traced.links.items():
            end_a, end_b = sorted((link.a, link.b))
            merged = links.setdefault(
                (end_a, end_b), m.MapLink(a=end_a, b=end_b, declared=False, hidden_hops=link.hidden_hops, paths=[])
            )
            merged.paths.extend(m.PathUse(**asdict(use)) for use in uses)
        return m.MapResponse(
            nodes=sorted(nodes.values(), key=lambda n: n.id),
            links=[links[key] for key in sorted(links)],
        )

    return routes
