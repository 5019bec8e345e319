"""Text of the generated files: YAML that reads well in review (block style for multi-line
PromQL, keys in the order written, no line folding) and JSON with two-space indentation,
keys in the order written, so that a regenerated file diffs only where something changed."""

from __future__ import annotations

import json

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def to_yaml(data, header: str = "") -> str:
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100_000, default_flow_style=False)
    return header + body


def to_json(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
