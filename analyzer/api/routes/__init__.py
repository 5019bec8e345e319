"""The API, one router per resource; analyzer/api/app.py assembles them."""

from analyzer.api.routes import (
    extranet_map,
    health,
    hints,
    history,
    metrics,
    paths,
    probe,
    segments,
    shipments,
    slices,
    topology,
)

# Each module's router(ApiContext); in this order in the OpenAPI document.
RESOURCES = (shipments, probe, slices, history, paths, hints, segments, topology, extranet_map, health, metrics)
