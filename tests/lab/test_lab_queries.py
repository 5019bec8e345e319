"""Questions to a lab that is up (where paths go, which faults are active), answered from its
record without bringing anything up: they must not parse the recorded topology each time."""

from __future__ import annotations

import gc

import lab.lab as lab_module
from lab import Lab
from lab.state import LabState, StateStore


def test_asking_where_paths_go_parses_the_recorded_topology_only_when_it_is_another_text(tmp_path, monkeypatch):
    """Each question used to parse the record's topology: ~5 ms and ~140 objects in reference
    cycles a time, kept long by the analyzer's collector thresholds in the soak's process."""
    store = StateStore(tmp_path)
    tiny = Lab.from_name("tiny", store=store)
    store.save(LabState("tiny", tiny.yaml_text, prefix=tiny.prefix, complete=True))
    small = Lab.from_name("small", store=store, prefix=tiny.prefix)  # another topology under the same prefix
    parsed: list[str] = []
    real_parse = lab_module.parse
    monkeypatch.setattr(lab_module, "parse", lambda text, source: (parsed.append(source), real_parse(text, source))[1])
    gc.collect()
    gc.disable()
    try:
        paths = {tiny.path("r1", "r3") for _ in range(20)}
        left_in_cycles = gc.collect()
    finally:
        gc.enable()
    assert paths == {("r1", "r2", "r3")} and parsed == [] and left_in_cycles < 100
    assert small.faults() == [] and parsed == ["tiny"]  # told apart by a parse of the other text
