"""`xnet_build_info`, the one definition every exporter of xnetmon renders (agent and analyzer)."""

from __future__ import annotations

import platform
from functools import cache
from importlib import metadata

from prometheus_client.core import GaugeMetricFamily


@cache
def build_labels() -> tuple[str, str]:
    """(xnetmon version, Python version)."""
    try:
        version = metadata.version("xnetmon")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        version = "unknown"
    return version, platform.python_version()


def build_info_family() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "xnet_build_info",
        "Always 1; the labels name the running xnetmon and Python versions.",
        labels=["version", "python"],
    )
    family.add_metric(list(build_labels()), 1)
    return family
