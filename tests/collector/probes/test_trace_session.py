"""The socket-free trace logic: scheduling, ends, stars, hop lists, fingerprints, reports."""

from __future__ import annotations

import pytest

from collector.contract.records import FlowId, HopAnswer, HopProbe, PathObservation, path_fingerprint
from collector.probes.trace_session import (
    Answer,
    TraceHop,
    TraceSession,
    TraceSettings,
    flows_needed,
    merge_paths,
    report,
)

FLOW = FlowId("udp", 0x12345, 40000, 33434)
R1, R2, R3, TARGET = "2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:9::1"
MS = 1_000_000


def settings(**kw) -> TraceSettings:
    values = dict(target="t", slice="video", dscp=34, probes_per_hop=2, max_hops=8, timeout_ns=100 * MS, parallel=64)
    values.update(kw)
    return TraceSettings(**values)


def send_all(session: TraceSession, now: int = 0) -> list[tuple[int, int]]:
    sent = []
    while (probe := session.next_probe()) is not None:
        session.on_sent(probe[0], now)
        sent.append(probe)
    return sent


def answer(session: TraceSession, seq: int, who: str, kind: HopAnswer, at: int = MS, detail: str | None = None) -> bool:
    return session.on_answer(seq, Answer(0, seq, who, at, kind, detail))


def test_probes_go_hop_by_hop_within_the_window():
    session = TraceSession(settings(parallel=3), FLOW)
    assert send_all(session) == [(0, 1), (1, 1), (2, 2)]
    answer(session, 0, R1, HopAnswer.TIME_EXCEEDED)
    assert send_all(session) == [(3, 2)]


def test_the_trace_stops_at_the_target_and_forgets_probes_beyond_it():
    session = TraceSession(settings(), FLOW)
    sent = send_all(session)
    assert len(sent) == 16  # hops 1..8, two each, all in flight at once
    path = {1: R1, 2: R2}
    for seq, hop in sent:
        if hop in path:
            answer(session, seq, path[hop], HopAnswer.TIME_EXCEEDED, at=hop * MS)
        elif hop >= 3:
            answer(session, seq, TARGET, HopAnswer.REACHED, at=hop * MS)  # beyond the target: it answers too
    assert session.final_hop == 3 and session.reached and session.done
    assert [h.hop for h in session.hops()] == [1, 2, 3]
    assert all(p.hop <= 3 for p in session.probes())
    assert session.hops()[0].probes[0].rtt_ns == MS
    assert session.next_probe() is None


def test_an_end_found_at_a_higher_hop_first_moves_down_when_a_lower_one_answers():
    session = TraceSession(settings(probes_per_hop=1), FLOW)
    send_all(session)
    answer(session, 4, TARGET, HopAnswer.REACHED)  # hop 5 answers first
    assert session.final_hop == 5
    answer(session, 2, TARGET, HopAnswer.REACHED)  # hop 3
    assert session.final_hop == 3
    assert not answer(session, 4, TARGET, HopAnswer.REACHED)  # already forgotten


def test_silence_becomes_stars_and_a_silent_hop_a_gap_in_the_hop_list():
    session = TraceSession(settings(probes_per_hop=2, max_hops=3), FLOW)
    send_all(session, now=0)
    answer(session, 0, R1, HopAnswer.TIME_EXCEEDED)
    answer(session, 4, TARGET, HopAnswer.REACHED)
    assert not session.done
    assert session.next_deadline() == 100 * MS
    session.expire(99 * MS)
    assert not session.done
    session.expire(100 * MS)
    assert session.done
    hops = session.hops()
    assert [p.responder for p in hops[0].probes] == [R1, None]
    assert hops[1].address is None and all(p.lost for p in hops[1].probes)
    observation = session.observation("2001:db8::10", 42)
    assert observation.hops == (R1, None, TARGET) and observation.reached
    assert observation.slice == "video" and observation.flow == FLOW and observation.observed_ns == 42


def test_without_an_answer_from_the_target_trailing_silence_is_dropped():
    session = TraceSession(settings(probes_per_hop=1, max_hops=5), FLOW)
    send_all(session)
    answer(session, 0, R1, HopAnswer.TIME_EXCEEDED)
    session.flush()
    assert session.done and not session.reached
    assert session.observation("s", 0).hops == (R1,)


def test_a_router_that_refuses_to_forward_ends_the_trace_with_its_reason():
    session = TraceSession(settings(probes_per_hop=1), FLOW)
    send_all(session)
    answer(session, 0, R1, HopAnswer.TIME_EXCEEDED)
    answer(session, 1, R2, HopAnswer.UNREACHABLE, detail="no route to destination")
    assert session.done and session.final_hop == 2 and not session.reached
    assert session.hops()[-1].probes[0].detail == "no route to destination"


def test_late_and_duplicate_answers_are_ignored():
    session = TraceSession(settings(probes_per_hop=1, max_hops=2), FLOW)
    send_all(session)
    assert answer(session, 0, R1, HopAnswer.TIME_EXCEEDED)
    assert not answer(session, 0, R1, HopAnswer.TIME_EXCEEDED)
    session.expire(200 * MS)
    assert not answer(session, 1, TARGET, HopAnswer.REACHED)
    assert session.late_answers == 2


def test_a_send_failure_is_a_star_with_the_reason():
    session = TraceSession(settings(probes_per_hop=1, max_hops=1), FLOW)
    seq, _hop = session.next_probe()
    session.on_send_failed(seq, 0, "Network is unreachable")
    assert session.done and session.probes()[0].detail == "Network is unreachable"


def test_the_most_frequent_responder_names_a_hop():
    probes = tuple(HopProbe(1, i, 0, HopAnswer.TIME_EXCEEDED, who, MS) for i, who in enumerate([R1, R2, R2]))
    hop = TraceHop(1, probes)
    assert hop.address == R2 and hop.responders == (R1, R2)
    tie = TraceHop(1, probes[:2])
    assert tie.address == R1


def test_fingerprints_are_stable_and_canonical():
    hops = (R1, None, TARGET)
    assert path_fingerprint(hops) == path_fingerprint(("2001:DB8:0::1", None, "2001:db8:9:0:0::1"))
    # Pinned: the analyzer compares fingerprints across hosts and releases.
    assert path_fingerprint(hops) == "a48724851466f6b9"  # sha256(b"2001:db8::1\n*\n2001:db8:9::1")[:16]
    assert path_fingerprint((R1, R2, TARGET)) != path_fingerprint(hops)
    assert path_fingerprint((R2, R1)) != path_fingerprint((R1, R2))
    observation = PathObservation("s", "t", "video", FLOW, hops, True, 1)
    assert observation.fingerprint == path_fingerprint(hops)


def rounds_of(*paths: list[tuple[str | None, HopAnswer, int | None]]) -> list[list[HopProbe]]:
    return [[HopProbe(hop, hop, 0, kind, who, rtt) for hop, (who, kind, rtt) in enumerate(path, 1)] for path in paths]


TE, END, LOST = HopAnswer.TIME_EXCEEDED, HopAnswer.REACHED, HopAnswer.NONE


def test_report_puts_loss_from_the_lossy_hop_onward():
    rounds = rounds_of(
        [(R1, TE, 1 * MS), (R2, TE, 2 * MS), (TARGET, END, 3 * MS)],
        [(R1, TE, 3 * MS), (None, LOST, None), (TARGET, END, 5 * MS)],
        # The end probe was lost, so this round went on; the probe above the end is dropped.
        [(R1, TE, 2 * MS), (R2, TE, 4 * MS), (None, LOST, None), (TARGET, END, 9 * MS)],
    )
    rows = report(rounds)
    assert [r.hop for r in rows] == [1, 2, 3]
    assert [r.address for r in rows] == [R1, R2, TARGET]
    assert [r.sent for r in rows] == [3, 3, 3]
    assert [round(r.loss_ratio, 3) for r in rows] == [0.0, 0.333, 0.333]
    first = rows[0]
    assert (first.last_ns, first.best_ns, first.worst_ns, first.avg_ns) == (2 * MS, 1 * MS, 3 * MS, 2 * MS)
    assert first.stdev_ns == 1 * MS  # sample standard deviation, as mtr prints


def test_report_of_a_path_that_never_ends_keeps_its_answered_hops():
    rows = report(rounds_of([(R1, TE, MS), (None, LOST, None)], [(R1, TE, MS), (None, LOST, None)]))
    assert [r.hop for r in rows] == [1]
    assert report([]) == []


def test_report_lists_other_responders_of_a_hop():
    rows = report(
        rounds_of(
            [(R1, TE, MS), (TARGET, END, MS)], [(R2, TE, MS), (TARGET, END, MS)], [(R2, TE, MS), (TARGET, END, MS)]
        )
    )
    assert rows[0].address == R2 and rows[0].others == (R1,)


def test_merge_paths_shows_ecmp_branches_per_hop():
    paths = [(R1, R2, TARGET), (R1, R3, TARGET), (R1, R2, TARGET), (R1, None)]
    observations = [PathObservation("s", "t", "-", FLOW, p, p[-1] == TARGET, 0) for p in paths]
    merged = merge_paths(observations)
    assert merged[0] == {R1: [0, 1, 2, 3]}
    assert merged[1] == {R2: [0, 2], R3: [1], "*": [3]}
    assert merged[2] == {TARGET: [0, 1, 2]}


def test_flows_needed_follows_the_mda_bound():
    assert flows_needed(1) == 1
    assert flows_needed(2) == 6
    assert flows_needed(4) == 16


@pytest.mark.parametrize(
    "bad",
    [
        dict(protocol="sctp"),
        dict(first_hop=0),
        dict(first_hop=9, max_hops=8),
        dict(max_hops=256),
        dict(probes_per_hop=0),
        dict(dscp=64),
    ],
)
def test_settings_refuse_nonsense(bad):
    with pytest.raises(ValueError):
        settings(**bad)


def test_hops_below_the_first_probed_are_unknown_in_the_observation():
    session = TraceSession(settings(first_hop=3, probes_per_hop=1), FLOW)
    sent = send_all(session)
    assert sent[0] == (0, 3)
    answer(session, 0, R3, HopAnswer.TIME_EXCEEDED)
    answer(session, 1, TARGET, HopAnswer.REACHED)
    assert [h.hop for h in session.hops()] == [3, 4]
    assert session.observation("s", 0).hops == (None, None, R3, TARGET)
