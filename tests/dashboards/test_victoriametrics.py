"""VictoriaMetrics' flags (13 months kept, for 30-day budgets and month-on-month comparisons)
and the Grafana data sources that list it beside Prometheus."""

from __future__ import annotations

import pytest

from dashboards.victoriametrics import RETENTION_MONTHS, datasources, default_file, flags, flags_of


def test_the_default_file_passes_the_flags_and_keeps_over_a_year():
    assert flags_of(default_file()) == flags()
    assert f"-retentionPeriod={RETENTION_MONTHS}" in flags() and RETENTION_MONTHS >= 13
    assert flags("/srv/vm", "127.0.0.1:1")[::2] == ["-storageDataPath=/srv/vm", "-httpListenAddr=127.0.0.1:1"]


def test_a_default_file_without_args_is_refused():
    with pytest.raises(ValueError, match="ARGS"):
        flags_of("# nothing\n")


def test_both_data_sources_speak_the_prometheus_api_and_prometheus_is_the_default():
    sources = datasources(30)["datasources"]
    assert {s["type"] for s in sources} == {"prometheus"}
    assert [s["name"] for s in sources if s.get("isDefault")] == ["Prometheus"]
    assert len({s["uid"] for s in sources}) == 2
    assert {s["jsonData"]["timeInterval"] for s in sources} == {"30s"}
