"""The lab's record: JSON that reads back whole, fault ids, the lock, and forgetting a lab."""

from __future__ import annotations

import fcntl

from lab.state import DEFAULT_DIR, Fault, LabState, Process, StateStore, state_dir


def recorded() -> LabState:
    delay = Fault(
        "delay-1",
        "delay",
        "2024-05-01T12:00:00Z",
        {"link": "r1-r2", "delay_ms": 40.0},
        "+40 ms on r1>r2",
        undo=[["ip6tables", "-D", "x"]],
        processes=[Process(4242, 777, "r1", ["python", "-m", "lab.delay"], "delay-delay-1")],
    )
    return LabState(
        "tiny",
        "name: tiny\n",
        namespaces=["xl-r1"],
        complete=True,
        up_seconds=1.5,
        faults=[delay],
        processes=[Process(99, None, "r2", ["sleep", "1"], "reflector")],
        next_fault=2,
    )


def test_a_state_reads_back_exactly_from_its_file(tmp_path):
    store = StateStore(tmp_path / "lab")
    assert store.load() is None
    store.save(recorded())
    assert store.load() == recorded()
    assert [p.name for p in (tmp_path / "lab").iterdir()] == ["state.json"]  # no temporary left


def test_fault_ids_count_up_per_lab_and_faults_are_found_by_id():
    state = recorded()
    assert state.new_fault_id("loss") == "loss-2" and state.new_fault_id("delay") == "delay-3"
    assert state.fault("delay-1").processes[0].pid == 4242
    assert state.fault("loss-9") is None


def test_clearing_forgets_the_record_and_the_logs(tmp_path):
    store = StateStore(tmp_path)
    store.save(recorded())
    store.logs.mkdir()
    (store.logs / "reflector.log").write_text("...")
    store.clear()
    assert store.load() is None and not store.logs.exists()
    store.clear()  # nothing left to forget: no error


def test_the_lock_lets_one_command_at_a_time_in(tmp_path):
    store = StateStore(tmp_path)

    def try_lock() -> bool:
        with open(tmp_path / "lock", "w") as other:  # another command's own open file
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(other, fcntl.LOCK_UN)
            return True

    with store.locked():
        assert not try_lock()
    assert try_lock()


def test_the_state_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("XNETMON_LAB_STATE_DIR", raising=False)
    assert state_dir() == DEFAULT_DIR
    monkeypatch.setenv("XNETMON_LAB_STATE_DIR", str(tmp_path))
    assert state_dir() == tmp_path and StateStore().path == tmp_path / "state.json"
