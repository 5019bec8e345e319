"""The API, one router per resource; analyzer/api/app.py assembles them."""

from analyzer.api.routes import health, hints, metrics, paths, probe, segments, shipments, slices, topology

# Each module's router(ApiContext); in this order in the OpenAPI document.
RESOURCES = (shipments, probe, slices, paths, hints, segments, topology, health, metrics)
