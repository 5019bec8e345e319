"""GET /healthz: liveness, the store's figures, the agents seen and their health."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from analyzer.api import models as m
from analyzer.api.context import ApiContext


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    store = api.store

    @routes.get("/healthz", response_model=m.Health, summary="Liveness, store figures, agents seen and their health")
    def healthz() -> m.Health:
        errors = api.errors.latest()
        return m.Health(
            status="degraded" if errors else "ok",
            writes=api.tokens.configured,
            errors={name: m.LoopError(count=e.count, last_ns=e.last_ns, last=e.last) for name, e in errors.items()},
            store=store.stats(),
            agents=[
                m.AgentHealth(
                    site=a.site, last_batch_ns=a.last_batch_ns, health=None if a.health is None else asdict(a.health)
                )
                for a in store.agents()
            ],
        )

    return routes
