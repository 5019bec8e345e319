"""GET /segments: in-situ flow telemetry per segment (totals per slice and segment, and the
newest blocks), filtered by slice, flow (FlowMonID) and link or node."""

from __future__ import annotations

from fastapi import APIRouter, Query

from analyzer.api import models as m
from analyzer.api.context import ApiContext

MAX_BLOCKS = 5_000


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    segments = api.store.segments

    @routes.get(
        "/segments",
        response_model=m.Segments,
        summary="Loss and delay per segment of marked flows",
        description="From the counting points' alternate-marking blocks, paired along each flow's path.",
        responses={400: {"model": m.Problem, "description": "a filter out of range"}},
    )
    def list_segments(
        slice: str | None = Query(None, description="only this slice"),
        flow: int | None = Query(None, ge=0, lt=1 << 20, description="only this FlowMonID's blocks"),
        link: str | None = Query(None, max_length=255, description="only this segment: a link a>b or a node"),
        limit: int = Query(200, ge=0, le=MAX_BLOCKS, description="newest blocks to list"),
    ) -> m.Segments:
        summaries = [
            m.SegmentSummary(
                slice=slice_name,
                segment=segment,
                kind=kind,
                packets=t.packets,
                lost=t.lost,
                duplicated=t.duplicated,
                blocks=t.blocks,
                unknown_blocks=t.unknown_blocks,
                loss_ratio=t.lost / t.packets if t.packets else 0.0,
                last_delay_ns=t.last_delay_ns,
            )
            for (slice_name, segment, kind), t in sorted(segments.totals().items())
            if (slice is None or slice_name == slice) and (link is None or segment == link)
        ]
        blocks = segments.recent(slice_name=slice, flow_mon_id=flow, segment=link)[-limit:] if limit else []
        return m.Segments(
            segments=summaries,
            blocks=[m.SegmentBlockView.model_validate(b, from_attributes=True) for b in blocks],
        )

    return routes
