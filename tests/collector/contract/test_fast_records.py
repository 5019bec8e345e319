"""The fast record builder: the same records as the dataclass constructor, or a refusal."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from collector.contract.codec import record_dict
from collector.contract.fast_records import builder
from collector.contract.records import PathWindow
from tests.analyzer_support import T0, window


def test_the_fast_builder_refuses_records_it_would_build_wrongly():
    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            assert self.value >= 0

    with pytest.raises(TypeError, match="__post_init__"):
        builder(Checked)
    assert builder(PathWindow)(record_dict(window(T0)) | {"key": window(T0).key, "rtt_buckets": window(T0).rtt_buckets}) \
        == window(T0)
