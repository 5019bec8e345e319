"""GET /map: the extranet for the console's map: declared sites (with their roles) and
physical links, merged with what traced paths show (hops named as the hints name them), each
link with the paths that cross it in either direction, named as their windows are, and each
traced path's hops (`*` for a silent one). Where a topology is declared, a traced pair of
declared sites that it does not link is silent hops between them, not a link: it is left out."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter

from analyzer.api import models as m
from analyzer.api.context import ApiContext
from analyzer.traced_links import hop_names, name_of, traced_route
from analyzer.traced_topology import TracedTopology
from collector.contract.records import PathObservation


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    store = api.store

    @routes.get("/map", response_model=m.MapResponse, summary="Declared and traced sites and physical links")
    def get_map() -> m.MapResponse:
        names = hop_names(api.site_names, store.latest_windows(), {a.site for a in store.agents()})
        observations = store.observations()
        traced = TracedTopology.from_observations(observations, names)
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
        for a, b, cost in declared.links if declared else ():
            end_a, end_b = sorted((a, b))
            links[(end_a, end_b)] = m.MapLink(a=end_a, b=end_b, declared=True, cost=cost, hidden_hops=0, paths=[])
        declared_sites = {site for site, _ in declared.roles} if declared else set()
        for link, uses in traced.links.items():
            end_a, end_b = sorted((link.a, link.b))
            if {end_a, end_b} <= declared_sites and (end_a, end_b) not in links:
                continue  # two declared sites with silent hops between: the route shows it, no such link exists
            merged = links.setdefault(
                (end_a, end_b),
                m.MapLink(a=end_a, b=end_b, declared=False, cost=None, hidden_hops=link.hidden_hops, paths=[]),
            )
            # A trace's source and target as the windows name their path (an agent traces from an address).
            merged.paths.extend(
                m.PathUse(
                    source=name_of(use.source, names),
                    target=name_of(use.target, names),
                    slice=use.slice,
                    fingerprint=use.fingerprint,
                )
                for use in uses
            )
        return m.MapResponse(
            nodes=sorted(nodes.values(), key=lambda n: n.id),
            links=[links[key] for key in sorted(links)],
            routes=[_route(o, names) for o in sorted(observations, key=lambda o: (o.source, o.target, o.slice))],
        )

    return routes


def _route(observation: PathObservation, names: Mapping[str, str]) -> m.MapRoute:
    route = traced_route(observation, names)
    hops = [route.nodes[0]]
    for node, hidden in zip(route.nodes[1:], route.hidden):
        hops.extend(["*"] * hidden + [node])
    return m.MapRoute(
        source=name_of(observation.source, names),
        target=name_of(observation.target, names),
        slice=observation.slice,
        hops=hops,
    )
