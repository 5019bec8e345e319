"""Small builders for Grafana dashboard JSON (the classic dashboard model, schemaVersion 39).

Every panel gets the templated datasource (`${datasource}`, never a UID), a title, a
description and a unit; panels are laid out left to right in rows of 24 grid units. A `Row`
starts a new line with a row header; with `repeat` Grafana draws it and the panels after it
(up to the next row) once per selected value of that variable. The template variables
follow the grafana dashboard-linter: `datasource`, `job`, then the metric contract's
`slice`, `src` and `dst`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dashboards.promql import counter_rate

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_HEIGHT = 8
ROW_HEIGHT = 1

# Selectors every query uses, so the variables always apply.
JOB = 'job=~"$job"'
SLICE = f'{JOB}, slice=~"$slice"'
PATH = f'{SLICE}, src=~"$src", dst=~"$dst"'
SITE = f'{JOB}, src=~"$src"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # tables and stats read one value per series
    format: str = "time_series"  # or "table", "heatmap"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    type: str = "timeseries"
    width: int = 12
    options: dict = field(default_factory=dict)
    field_config: dict = field(default_factory=dict)  # merged into fieldConfig.defaults
    transformations: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Row:
    title: str  # may quote the repeated variable, e.g. "Segments: $slice"
    repeat: str | None = None  # a template variable's name


def _variable(name: str, label: str, query: str, *, multi: bool = True) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "hide": 0,
        "options": [],
        "regex": "",
    }


def variables(single_path: bool = False) -> list[dict]:
    """datasource, job, slice, src, dst; `single_path` makes slice/src/dst pick one value."""
    multi = not single_path
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        # Agents export xnet_build_info, the analyzer xnet_slice_state: list both jobs.
        _variable("job", "Job", 'label_values({__name__=~"xnet_build_info|xnet_slice_state"}, job)'),
        _variable("slice", "Slice", f"label_values(xnet_probe_sent_total{{{JOB}}}, slice)", multi=multi),
        _variable(
            "src", "Source site", f'label_values(xnet_probe_sent_total{{{JOB}, slice=~"$slice"}}, src)', multi=multi
        ),
        _variable(
            "dst",
            "Target",
            f'label_values(xnet_probe_sent_total{{{JOB}, slice=~"$slice", src=~"$src"}}, dst)',
            multi=multi,
        ),
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    targets = []
    for index, query in enumerate(panel.queries):
        targets.append(
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend or "__auto",
                "instant": query.instant,
                "range": not query.instant,
                "format": query.format,
                "editorMode": "code",
            }
        )
    return {
        "id": panel_id,
        "type": panel.type,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, **panel.field_config}, "overrides": []},
        "options": panel.options,
        "targets": targets,
        "transformations": list(panel.transformations),
    }


def _row_json(row: Row, panel_id: int, y: int) -> dict:
    built = {
        "id": panel_id,
        "type": "row",
        "title": row.title,
        "collapsed": False,
        "gridPos": {"h": ROW_HEIGHT, "w": 24, "x": 0, "y": y},
        "panels": [],  # an open row's panels follow it in the dashboard's list
    }
    if row.repeat is not None:
        built["repeat"] = row.repeat
    return built


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[Panel | Row],
    *,
    single_path: bool = False,
    tags: tuple[str, ...] = (),
) -> dict:
    laid_out, x, y = [], 0, 0
    for panel_id, panel in enumerate(panels, start=1):
        if isinstance(panel, Row):
            y += PANEL_HEIGHT if x else 0
            laid_out.append(_row_json(panel, panel_id, y))
            x, y = 0, y + ROW_HEIGHT
            continue
        if x + panel.width > 24:
            x, y = 0, y + PANEL_HEIGHT
        laid_out.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["xnetmon", *tags],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "refresh": "30s",
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["xnetmon"],
                "asDropdown": True,
                "title": "xnetmon",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables(single_path)},
        "panels": laid_out,
    }


def rate(metric: str, selector: str) -> str:
    return counter_rate(f"{metric}{{{selector}}}", "$__rate_interval")


def summed(metric: str, by: str, selector: str, legend: str = "", **query) -> Query:
    """Per-second rate of a counter, summed by `by`: the shape of most panels' queries."""
    return Query(f"sum by ({by}) ({rate(metric, selector)})", legend, **query)


def loss_ratio(by: str, selector: str) -> str:
    return (
        f"sum by ({by}) ({rate('xnet_probe_lost_total', selector)})\n"
        f"/ sum by ({by}) ({rate('xnet_probe_sent_total', selector)})"
    )


def segment_loss_ratio(by: str, selector: str) -> str:
    """In-situ segments: marked packets lost over marked packets that entered, summed by `by`."""
    return (
        f"sum by ({by}) ({rate('xnet_segment_lost_packets_total', selector)})\n"
        f"/ sum by ({by}) ({rate('xnet_segment_packets_total', selector)})"
    )


def loss_by_direction(by: str, selector: str) -> str:
    return (
        f"sum by ({by}, direction) ({rate('xnet_probe_lost_total', selector)})\n"
        f"/ ignoring (direction) group_left sum by ({by}) ({rate('xnet_probe_sent_total', selector)})"
    )


def rtt_quantile(q: float, by: str, selector: str) -> str:
    return f"histogram_quantile({q:g}, sum by ({by}, le) ({rate('xnet_rtt_seconds_bucket', selector)}))"


def percentiles(by: str, selector: str, legend_prefix: str) -> tuple[Query, ...]:
    return tuple(Query(rtt_quantile(q, by, selector), f"{legend_prefix} p{round(q * 100)}") for q in (0.5, 0.9, 0.99))
