"""The generated dashboards follow the grafana dashboard-linter's rules and Grafana's
dashboard model.

Linter rules checked (named as the linter names them): template-datasource-rule,
template-job-rule, template-label-promql-rule, panel-datasource-rule,
panel-title-description-rule, panel-units-rule, target-promql-rule (PromQL parsed by
promtool), target-rate-interval-rule, target-job-rule, target-counter-agg-rule; plus the
metric contract's `slice`, `src`, `dst` variables and no hard-coded datasource UID anywhere.

Schema: no installable package ships Grafana's dashboard JSON schema as a file (the npm
`@grafana/schema` package has TypeScript types only; `grafana-foundation-sdk` builds
dashboards but does not validate them), so `DashboardModel` below states the structure of
Grafana's documented dashboard JSON model (schemaVersion 39) as pydantic models.
"""

from __future__ import annotations

import re
import subprocess
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tests.dashboard_support import dashboards, data_panels, panel_queries, runnable

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's unit ids (packages/grafana-data valueFormats) the dashboards may use.
KNOWN_UNITS = {"s", "ms", "percentunit", "percent", "none", "short", "bool", "bps", "Bps", "pps", "ops", "bytes"}
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "state-timeline", "heatmap", "nodeGraph", "gauge", "text"}
COUNTER = re.compile(r"\b(xnet_\w+(?:_total|_bucket|_count|_sum))\b")
SELECTOR = re.compile(r"\b(xnet_\w+)(\{[^}]*\})?")
RANGE_FUNCTION = re.compile(r"\b(rate|irate|increase)\((\w+)\{[^}]*\}\[([^\]]+)\]\)")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class GridPos(_Model):
    h: int = Field(gt=0)
    w: int = Field(gt=0, le=24)
    x: int = Field(ge=0, lt=24)
    y: int = Field(ge=0)

    @model_validator(mode="after")
    def _fits(self) -> GridPos:
        assert self.x + self.w <= 24, "panel wider than the 24-column grid"
        return self


class DataSourceRef(_Model):
    type: str
    uid: str


class Target(_Model):
    refId: str = Field(pattern=r"^[A-Z]$")
    expr: str = Field(min_length=1)
    datasource: DataSourceRef
    format: Literal["time_series", "table", "heatmap"]
    instant: bool
    range: bool


class FieldConfig(_Model):
    defaults: dict
    overrides: list


class Panel(_Model):
    id: int = Field(gt=0)
    type: str
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    gridPos: GridPos
    datasource: DataSourceRef
    targets: list[Target] = Field(min_length=1)
    fieldConfig: FieldConfig
    options: dict
    transformations: list[dict]

    @field_validator("targets")
    @classmethod
    def _unique_ref_ids(cls, targets: list[Target]) -> list[Target]:
        ids = [t.refId for t in targets]
        assert len(ids) == len(set(ids)), f"refIds repeat: {ids}"
        return targets


class RowPanel(_Model):
    """A row header: no query; `repeat` names a template variable."""

    id: int = Field(gt=0)
    type: Literal["row"]
    title: str = Field(min_length=1)
    collapsed: bool
    gridPos: GridPos
    panels: list[dict]
    repeat: str | None = None


class Variable(_Model):
    name: str = Field(pattern=r"^[a-z_]+$")
    type: Literal["query", "datasource", "custom", "constant", "interval", "textbox"]
    hide: int


class Templating(_Model):
    list: list[Variable]


class TimeRange(BaseModel):
    from_: str = Field(alias="from")
    to: str


class DashboardModel(_Model):
    uid: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,40}$")
    title: str = Field(min_length=1)
    schemaVersion: int = Field(ge=36)
    version: int
    editable: bool
    time: TimeRange
    templating: Templating
    annotations: dict
    panels: list[RowPanel | Panel] = Field(min_length=1)
    tags: list[str]

    @model_validator(mode="after")
    def _consistent(self) -> DashboardModel:
        ids = [p.id for p in self.panels]
        assert len(ids) == len(set(ids)), "panel ids repeat"
        names = [v.name for v in self.templating.list]
        assert len(names) == len(set(names)), "variable names repeat"
        repeats = {p.repeat for p in self.panels if isinstance(p, RowPanel) and p.repeat is not None}
        assert repeats <= set(names), f"rows repeat over undefined variables: {repeats - set(names)}"
        cells = set()
        for panel in self.panels:
            g = panel.gridPos
            mine = {(x, y) for x in range(g.x, g.x + g.w) for y in range(g.y, g.y + g.h)}
            assert not cells & mine, f"panel {panel.title!r} overlaps another"
            cells |= mine
        return self


BOARDS = dashboards()
BOARD_IDS = [b["uid"] for b in BOARDS]


def test_the_five_dashboards_are_generated():
    assert set(BOARD_IDS) == {"xnet-overview", "xnet-slice", "xnet-path", "xnet-flows", "xnet-collector"}


@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
def test_dashboard_matches_grafanas_dashboard_model(board):
    model = DashboardModel.model_validate(board)
    for panel in model.panels:
        assert isinstance(panel, RowPanel) or panel.type in PANEL_TYPES, panel.type


def test_the_schema_check_refuses_a_broken_dashboard():
    broken = dict(BOARDS[0], panels=[dict(BOARDS[0]["panels"][0], gridPos={"h": 8, "w": 30, "x": 0, "y": 0})])
    with pytest.raises(ValueError):
        DashboardModel.model_validate(broken)
    overlapping = dict(
        BOARDS[0],
        panels=[BOARDS[0]["panels"][0], dict(BOARDS[0]["panels"][1], id=99, gridPos=BOARDS[0]["panels"][0]["gridPos"])],
    )
    with pytest.raises(ValueError):
        DashboardModel.model_validate(overlapping)


def test_the_slice_board_repeats_a_row_of_segment_loss_and_delay_per_slice():
    [board] = [b for b in BOARDS if b["uid"] == "xnet-slice"]
    [row] = [p for p in board["panels"] if p["type"] == "row"]
    assert row["repeat"] == "slice" and "$slice" in row["title"]
    under = [p for p in board["panels"] if p["gridPos"]["y"] > row["gridPos"]["y"]]
    exprs = [t["expr"] for p in under for t in p["targets"]]
    assert [p["fieldConfig"]["defaults"]["unit"] for p in under] == ["percentunit", "s"]
    assert "xnet_segment_lost_packets_total" in exprs[0] and "xnet_segment_packets_total" in exprs[0]
    assert "xnet_segment_delay_seconds" in exprs[1]


@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
def test_template_variables(board):
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables)[:2] == ["datasource", "job"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("job", "slice", "src", "dst"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE_REF, name
        assert re.fullmatch(r"label_values\(((xnet_\w+)?(\{[^}]*\})?, )?" + name + r"\)", variable["query"]["query"]), (
            name
        )
    assert variables["job"]["multi"] and variables["job"]["includeAll"]


@pytest.mark.parametrize("board", BOARDS, ids=BOARD_IDS)
def test_panels_have_title_description_unit_and_the_templated_datasource(board):
    for panel in data_panels(board):
        where = f"{board['uid']}: {panel['title']!r}"
        assert panel["title"].strip() and panel["description"].strip(), where
        assert panel["fieldConfig"]["defaults"].get("unit") in KNOWN_UNITS, where
        assert panel["datasource"] == DATASOURCE_REF, where
        assert all(t["datasource"] == DATASOURCE_REF for t in panel["targets"]), where


def test_no_datasource_uid_is_hard_coded_anywhere():
    def uids(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource" and isinstance(value, dict):
                    yield value.get("uid")
                yield from uids(value)
        elif isinstance(node, list):
            for item in node:
                yield from uids(item)

    found = {uid for board in BOARDS for uid in uids(board)}
    assert found == {"${datasource}"}


@pytest.mark.parametrize("uid, title, expr", list(panel_queries()))
def test_queries_use_rate_interval_job_and_aggregate_counters(uid, title, expr):
    for function, metric, window in RANGE_FUNCTION.findall(expr):
        assert window == "$__rate_interval", f"{title}: {function}({metric}[{window}])"
    for metric, matchers in SELECTOR.findall(expr):
        assert 'job=~"$job"' in (matchers or ""), f"{title}: {metric} without the job matcher"
    # A counter's raw value means nothing on a graph: it must be inside rate().
    for counter in COUNTER.findall(expr):
        assert re.search(r"rate\(" + counter + r"\{", expr), f"{title}: {counter} read without rate()"


def test_the_lint_helpers_catch_what_they_should():
    assert RANGE_FUNCTION.findall('rate(xnet_probe_sent_total{job=~"$job"}[5m])') == [
        ("rate", "xnet_probe_sent_total", "5m")
    ]
    assert SELECTOR.findall("sum(xnet_probe_sent_total)") == [("xnet_probe_sent_total", "")]


@pytest.mark.tool("promtool")
def test_every_panel_query_is_valid_promql(tmp_path):
    """target-promql-rule: promtool parses each query (variables replaced as Grafana does)."""
    rules = [{"record": f"check:panel_{n}", "expr": runnable(expr)} for n, (_, _, expr) in enumerate(panel_queries())]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", "panels.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
