"""Every decoder of network and disk input under its fuzz target (tests/fuzz/targets.py).

The committed corpus (seeds from real packets and files, and every input that once crashed
a target) is replayed in-process: each input must be taken or refused with the decoder's
documented error. Then each target runs briefly under atheris, coverage-guided, from that
corpus; a longer campaign is `python -m bench.fuzz`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib

import pytest

from analyzer.store.memory import WindowStore
from tests.fuzz.seeds import BUILDERS
from tests.fuzz.targets import TARGETS, deflated, framed, frames, json_leaves
from tests.support import REPO

SECONDS_PER_TARGET = 2  # 19 targets: about 40 s of fuzzing in all, after one import
RUNS_PER_TARGET = 5000


def test_every_target_has_seeds_built_from_real_input():
    assert set(BUILDERS) == set(TARGETS)
    empty = [name for name, target in TARGETS.items() if not any(target.corpus.glob("seed-*"))]
    assert not empty, f"targets without seeds (run python -m tests.fuzz.seeds): {empty}"


def test_framing_gives_back_the_datagrams_and_cuts_a_short_last_one():
    assert list(frames(framed(b"abc", b"", b"de"))) == [b"abc", b"", b"de"]
    assert list(frames(b"\x00\x05ab\x01")) == [b"ab\x01"]
    assert list(frames(b"\x00\x01a\x07")) == [b"a"]  # a lone octet is no length


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_corpus_is_taken_or_refused(name):
    target = TARGETS[name]
    inputs = sorted(target.corpus.iterdir())
    crashed = []
    for path in inputs:
        try:
            target.run(path.read_bytes())
        except Exception as exc:  # anything the target does not refuse is a crash
            crashed.append(f"{path.name}: {type(exc).__name__}: {exc}")
    assert inputs and not crashed, "\n".join(crashed)


def test_a_deflated_inputs_mutation_changes_its_content_and_stays_deflated():
    mutator = deflated(lambda content, max_size: content.replace(b"1", b"2")[:max_size])
    seed = zlib.compress(b'{"at_ns": 1}')
    assert zlib.decompress(mutator(seed, 100, 0)) == b'{"at_ns": 2}'
    assert zlib.decompress(mutator(b"not deflated", 100, 0)) == b"{}"  # starts over from an empty object
    grown = deflated(lambda content, max_size: bytes(range(256)) * 4)
    assert grown(seed, 64, 0) == seed  # past the size bound once deflated: the input unchanged


def octets_only(data: bytes, max_size: int) -> bytes:
    return b"octets:" + data[: max_size - 7]


def test_json_mutations_change_the_structure_and_leave_octet_mutations_to_the_fuzzer():
    mutator = json_leaves(octets_only)
    document = {"partition": 1, "closed_through": {"video": 7}, "intervals": [{"sent": 20}, {"sent": 3}]}
    seed = json.dumps(document).encode()
    outputs = [mutator(seed, 4096, n) for n in range(200)]
    structural = {out for out in outputs if not out.startswith(b"octets:")}
    assert len(structural) > 20  # many distinct documents, each still JSON
    assert all(isinstance(json.loads(out), dict) for out in structural)
    assert any(out.startswith(b"octets:") for out in outputs)  # half the time the fuzzer's own
    assert mutator(b"{not json", 4096, 1) == b"octets:{not json"
    deep = b"[" * 100_000 + b"]" * 100_000
    assert mutator(deep, 300_000, 1).startswith(b"octets:")  # too deep to walk: octets only
    assert all(len(mutator(seed, len(seed), n)) <= len(seed) for n in range(50))  # the size bound


def test_a_partition_report_reaches_the_combined_slice_verdicts(monkeypatch):
    combined = []
    real = WindowStore.add_slice_interval
    monkeypatch.setattr(WindowStore, "add_slice_interval", lambda self, *a: combined.append(a[0]) or real(self, *a))
    target = TARGETS["partials"]
    for path in sorted(target.corpus.glob("seed-*")):
        target.run(path.read_bytes())
    assert "video" in combined  # the two-partition seed's intervals were closed and judged


def test_every_target_survives_a_short_fuzzing_run(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run_target",
            ",".join(TARGETS),
            str(tmp_path),
            f"-max_total_time={SECONDS_PER_TARGET}",
            f"-runs={RUNS_PER_TARGET}",
            "-print_final_stats=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    failed = {}
    for name in TARGETS:
        log = (tmp_path / name / "fuzz.log").read_text()
        crashes = sorted(p.name for p in (tmp_path / name).glob("crash-*"))
        if crashes or f"{name}: exit status 0" not in run.stderr or "stat::number_of_executed_units:" not in log:
            failed[name] = f"{crashes}\n{log[-4000:]}"
    assert run.returncode == 0 and not failed, "\n\n".join(f"== {n}: {text}" for n, text in failed.items())
