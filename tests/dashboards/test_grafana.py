"""The dashboard JSON builders: panels laid out in rows of 24, one refId per query, the
templated datasource everywhere, and the template variables in the linter's order."""

from __future__ import annotations

from dashboards.grafana import (
    DATASOURCE,
    PANEL_HEIGHT,
    PATH,
    ROW_HEIGHT,
    Panel,
    Query,
    Row,
    dashboard,
    percentiles,
    summed,
    variables,
)


def panel(title: str, width: int, queries: int = 1) -> Panel:
    return Panel(
        title, f"What {title} shows.", "s", tuple(Query(f"up{{n='{i}'}}") for i in range(queries)), width=width
    )


def test_panels_fill_rows_of_24_left_to_right_and_wrap_when_full():
    board = dashboard("uid-1", "Title", "About.", [panel("a", 12), panel("b", 8), panel("c", 8), panel("d", 24)])
    assert [(p["title"], p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]] == [
        ("a", 0, 0),
        ("b", 12, 0),
        ("c", 0, PANEL_HEIGHT),
        ("d", 0, 2 * PANEL_HEIGHT),
    ]
    assert [p["id"] for p in board["panels"]] == [1, 2, 3, 4]


def test_a_row_starts_a_new_line_of_its_own_and_names_the_variable_it_repeats_over():
    board = dashboard("u", "T", "D", [panel("a", 12), Row("Per $slice", repeat="slice"), panel("b", 12), Row("Plain")])
    _a, row, b, plain = board["panels"]
    assert row["gridPos"] == {"h": ROW_HEIGHT, "w": 24, "x": 0, "y": PANEL_HEIGHT}
    assert (row["type"], row["repeat"], row["collapsed"]) == ("row", "slice", False)
    assert (b["gridPos"]["x"], b["gridPos"]["y"]) == (0, PANEL_HEIGHT + ROW_HEIGHT)
    assert plain["gridPos"]["y"] == 2 * PANEL_HEIGHT + ROW_HEIGHT and "repeat" not in plain
    assert [p["id"] for p in board["panels"]] == [1, 2, 3, 4]


def test_queries_get_letters_and_every_part_the_templated_datasource():
    [built] = dashboard("u", "T", "D", [panel("a", 6, queries=3)])["panels"]
    assert [t["refId"] for t in built["targets"]] == ["A", "B", "C"]
    assert built["datasource"] == DATASOURCE and all(t["datasource"] == DATASOURCE for t in built["targets"])
    assert built["fieldConfig"]["defaults"]["unit"] == "s"
    assert all(t["legendFormat"] == "__auto" and t["range"] for t in built["targets"])


def test_variables_come_in_the_linters_order_and_a_path_board_picks_one_path():
    assert [v["name"] for v in variables()] == ["datasource", "job", "slice", "src", "dst"]
    many = {v["name"]: v for v in variables()}
    one = {v["name"]: v for v in variables(single_path=True)}
    assert many["slice"]["includeAll"] and many["slice"]["allValue"] == ".*"
    assert not one["dst"]["multi"] and one["dst"]["allValue"] is None
    assert one["job"]["multi"]  # the job stays a choice of many
    assert dashboard("u", "T", "D", [], single_path=True)["templating"]["list"] == variables(single_path=True)


def test_query_helpers_rate_over_the_dashboard_interval_with_the_variables():
    assert summed("xnet_probe_sent_total", "slice", PATH).expr == (
        "sum by (slice) (max without (replica) "
        '(rate(xnet_probe_sent_total{job=~"$job", slice=~"$slice", src=~"$src", dst=~"$dst"}[$__rate_interval])))'
    )
    assert [q.legend for q in percentiles("slice", PATH, "{{slice}}")] == [
        "{{slice}} p50",
        "{{slice}} p90",
        "{{slice}} p99",
    ]
