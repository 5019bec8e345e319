"""The generated files' text: YAML that reviews well and JSON that diffs only where it changed."""

from __future__ import annotations

import json

import yaml

from dashboards.render import to_json, to_yaml


def test_multi_line_promql_is_a_block_and_long_lines_are_never_folded():
    expr = "sum by (slice) (rate(x[5m]))\n/ sum by (slice) (rate(y[5m]))"
    long_line = "a" * 300
    text = to_yaml({"expr": expr, "long": long_line}, "# header\n")
    assert text.startswith("# header\nexpr: |-\n  sum by (slice)")
    assert f"long: {long_line}\n" in text
    assert yaml.safe_load(text) == {"expr": expr, "long": long_line}


def test_keys_keep_the_order_written_and_text_stays_readable():
    text = to_yaml({"zeta": 1, "alpha": ["→ é", {"b": 2, "a": 1}]})
    assert text == "zeta: 1\nalpha:\n- → é\n- b: 2\n  a: 1\n"


def test_json_has_two_space_indentation_keys_in_order_and_a_final_newline():
    text = to_json({"uid": "x", "title": "Débit", "panels": [1]})
    assert text == '{\n  "uid": "x",\n  "title": "Débit",\n  "panels": [\n    1\n  ]\n}\n'
    assert json.loads(text)["title"] == "Débit"
