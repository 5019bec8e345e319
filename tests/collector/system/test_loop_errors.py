"""collector.system.loop_errors: a block that raises is counted by component with its words, and the
code after it runs on."""

from __future__ import annotations

from collector.system.loop_errors import MAX_ERROR_TEXT, LoopErrors


def test_survive_counts_the_error_and_lets_the_loop_go_on():
    errors = LoopErrors(clock=lambda: 42)
    ran_after = []
    for n in range(3):
        with errors.survive("snapshot", "writing the snapshot"):
            if n < 2:
                raise OverflowError(f"boom {n}")
        ran_after.append(n)
    assert ran_after == [0, 1, 2]
    assert errors.counts() == {"snapshot": 2}
    latest = errors.latest()["snapshot"]
    assert latest.count == 2 and latest.last_ns == 42 and latest.last == "OverflowError: boom 1"


def test_the_latest_words_are_bounded():
    errors = LoopErrors()
    errors.note("rootcause", ValueError("x" * 10_000))
    assert len(errors.latest()["rootcause"].last) == MAX_ERROR_TEXT
