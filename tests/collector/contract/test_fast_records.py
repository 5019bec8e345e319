"""The fast record builder: the very record the constructor makes, and a refusal for records
it cannot build that way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from collector.contract.codec import record_dict
from collector.contract.fast_records import builder, copier
from collector.contract.records import PathKey, PathWindow
from tests.analyzer_support import T0, window


def test_the_fast_builder_refuses_records_it_would_build_wrongly():
    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            assert self.value >= 0

    with pytest.raises(TypeError, match="__post_init__"):
        builder(Checked)
    assert builder(PathWindow)(
        record_dict(window(T0)) | {"key": window(T0).key, "rtt_buckets": window(T0).rtt_buckets}
    ) == window(T0)


def fields_of(record) -> dict:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def test_a_built_record_equals_and_hashes_as_the_constructed_one_and_stays_frozen():
    expected = window(T0, target="edge", lost=4)
    built = builder(PathWindow)(fields_of(expected))
    assert type(built) is PathWindow and built == expected and hash(built) == hash(expected)
    assert built.loss_ratio == expected.loss_ratio  # methods and properties work on it
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.sent = 0


def test_a_missing_field_is_an_error_not_an_unset_slot():
    with pytest.raises(KeyError, match="kind"):
        builder(PathKey)({"source": "a", "target": "b", "slice": "video"})


def test_records_without_slots_and_plain_classes_are_refused():
    @dataclass(frozen=True)
    class Unslotted:
        value: int

    with pytest.raises(TypeError, match="Unslotted is not a slotted dataclass"):
        builder(Unslotted)
    with pytest.raises(TypeError, match="dict is not a slotted dataclass"):
        builder(dict)


def test_a_copier_builds_the_record_from_attributes_of_the_same_names():
    original = window(T0)
    source = SimpleNamespace(**{f.name: getattr(original, f.name) for f in dataclasses.fields(original)})
    copied = copier(PathWindow)(source)
    assert copied == original and hash(copied) == hash(original)
