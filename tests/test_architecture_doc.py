"""docs/architecture.md stays true: its metric tables list exactly the metrics the code exposes,
and every package it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
EXPOSING_PACKAGES = ("collector", "analyzer", "xnetmon")  # dashboards only query metrics

_FAMILY = re.compile(r'(\w+MetricFamily)\(\s*"(xnet_\w+)"')
_NAME = re.compile(r'"(xnet_\w+)"')
_DOC_ROW = re.compile(r"^\| `(xnet_\w+)` \| (\w+) \|", re.M)


def _exposed_by_code() -> dict[str, str]:
    """Metric name -> type, from the metric families the code builds. Counters get the
    `_total` that prometheus_client gives their samples."""
    exposed: dict[str, str] = {}
    for package in EXPOSING_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            source = path.read_text()
            for family, name in _FAMILY.findall(source):
                kind = family.removesuffix("MetricFamily").lower()
                if kind == "counter" and not name.endswith("_total"):
                    name += "_total"
                exposed[name] = kind
            for name in _NAME.findall(source):  # names kept in tables, handed to a family later
                if name not in exposed and f"{name}_total" not in exposed:
                    exposed[name] = "counter" if name.endswith("_total") else "?"
    return exposed


def _documented() -> dict[str, str]:
    return dict(_DOC_ROW.findall(DOC.read_text()))


def test_every_metric_the_code_exposes_is_documented_with_its_type():
    exposed, documented = _exposed_by_code(), _documented()
    assert exposed, "no metric found in the code: the scan is broken"
    missing = sorted(set(exposed) - set(documented))
    assert not missing, f"metrics exposed but not in docs/architecture.md: {missing}"
    wrong = {n: (documented[n], t) for n, t in exposed.items() if t != "?" and documented[n] != t}
    assert not wrong, f"documented type differs from the code's (doc, code): {wrong}"


def test_every_documented_metric_is_still_exposed():
    stale = sorted(set(_documented()) - set(_exposed_by_code()))
    assert not stale, f"docs/architecture.md lists metrics the code no longer exposes: {stale}"


def test_every_package_the_doc_names_exists():
    named = set(re.findall(r"^\| `((?:collector|analyzer)/[\w/]*)`", DOC.read_text(), re.M))
    assert named, "no package rows found in docs/architecture.md"
    missing = sorted(p for p in named if not (REPO / p).is_dir())
    assert not missing, f"docs/architecture.md names packages that do not exist: {missing}"


def test_every_package_is_in_the_doc():
    text = DOC.read_text()
    packages = sorted(
        str(init.parent.relative_to(REPO)) + "/"
        for top in ("collector", "analyzer")
        for init in (REPO / top).rglob("__init__.py")
        if init.parent != REPO / top
    )
    missing = [p for p in packages if f"`{p}`" not in text]
    assert not missing, f"packages missing from docs/architecture.md's table of parts: {missing}"


def test_the_readme_links_the_architecture():
    assert "docs/architecture.md" in (REPO / "README.md").read_text()
