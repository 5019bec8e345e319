"""GET /topology: nodes and links from the latest traced paths, named as the hints name them."""

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

    @routes.get("/topology", response_model=m.TopologyResponse, summary="Nodes and links from the latest traced paths")
    def get_topology() -> m.TopologyResponse:
        observations = store.observations()
        names = hop_names(api.site_names, store.latest_windows(), {a.site for a in store.agents()})
        topology = TracedTopology.from_observations(observations, names)
        return m.TopologyResponse(
            nodes=[m.TopologyNode(id=node, role=role) for node, role in sorted(topology.nodes.items())],
            links=[
                m.TopologyLink(
                    a=link.a, b=link.b, hidden_hops=link.hidden_hops, paths=[m.PathUse(**asdict(use)) for use in uses]
                )
                for link, uses in sorted(topology.links.items(), key=lambda item: (item[0].a, item[0].b))
            ],
            observations=len(observations),
        )

    return routes
