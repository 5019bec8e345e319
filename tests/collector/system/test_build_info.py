"""xnet_build_info (collector.system.build_info): one series, value 1, the running versions."""

from __future__ import annotations

import platform

from collector.system.build_info import build_info_family, build_labels


def test_build_info_is_one_series_of_value_one_naming_the_versions():
    family = build_info_family()
    assert (family.name == "xnet_build" and family.type == "info") or family.name == "xnet_build_info"
    (sample,) = family.samples
    assert sample.value == 1 and sample.labels == {"version": build_labels()[0], "python": platform.python_version()}
    assert build_labels()[0]  # a version, or "unknown" when running from a checkout
