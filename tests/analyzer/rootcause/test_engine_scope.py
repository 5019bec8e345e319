"""Classification and localisation around the ends of paths and the scope of a fault: a site
cut off behind its link, a full link against a starved slice, pseudo-components that only
soak up what real components explain, and route changes seen on the way back only."""

from __future__ import annotations

from dataclasses import replace

from analyzer.rootcause.engine import diagnose
from analyzer.rootcause.model import CONGESTION_OR_ISOLATION, Epoch, kind_parts
from analyzer.rootcause.pathchange import path_change_diagnoses
from tests.analyzer.rootcause.engine_support import probe
from tests.analyzer.rootcause.engine_topology import mesh, route

BASE_RTT = 0.010


def crosses(path, *parts: str) -> bool:
    return any(part in path.forward or part in path.reverse for part in parts)


def named(diagnoses) -> set[str]:
    return {name for d in diagnoses for name in d.suspects}


def test_a_site_cut_off_behind_its_link_is_link_or_node_down_with_its_reflector_kept_in_the_class() -> None:
    # b1's uplink is down: its agent ships nothing, the paths towards it lose everything
    paths = [p for p in mesh(loss={"p2>b1": 1.0, "b1>p2": 1.0}) if p.source != "b1"]
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [d.kind for d in diagnoses] == ["node-down"]
    assert {"p2>b1", "b1", "service:b1"} <= set(diagnoses[0].suspects)
    assert any("service:b1 kept in the class" in sentence for sentence in diagnoses[0].evidence)


def with_delay(paths, link_parts, hit_slices, loss_slices, rtt_up: float, jitter: float):
    out = []
    for p in paths:
        hit = crosses(p, *link_parts) and p.slice in hit_slices
        out.append(
            replace(
                p,
                delay_s=BASE_RTT + (rtt_up if hit else 0.0),
                baseline_delay_s=BASE_RTT,
                jitter_s=jitter if hit else 0.0005,
                baseline_jitter_s=0.0005,
            )
        )
    return out


def test_one_slice_losing_on_a_link_that_delays_every_slice_is_congestion_scoped_to_that_slice() -> None:
    # a full link: best-effort dropped, the protected slices queue behind it without loss
    paths = mesh(slices=("video", "egov", "data")) + mesh(slices=("best-effort",), loss={"p2>r": 0.05})
    paths = with_delay(paths, ("p2>r", "r>p2"), {"video", "egov", "data", "best-effort"}, {"best-effort"}, 0.004, 0.005)
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [(d.kind, d.slices) for d in diagnoses] == [("congestion", ("best-effort",))]
    assert "p2>r" in diagnoses[0].suspects
    assert any("without loss" in sentence for sentence in diagnoses[0].evidence)


def test_one_slice_losing_while_the_others_keep_their_delay_is_slice_isolation() -> None:
    paths = mesh(slices=("video", "egov", "data")) + mesh(slices=("best-effort",), loss={"p2>r": 0.05})
    paths = with_delay(paths, ("p2>r", "r>p2"), {"best-effort"}, {"best-effort"}, 0.004, 0.005)
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [(d.kind, d.slices) for d in diagnoses] == [("slice-isolation", ("best-effort",))]


def test_a_starved_slice_on_a_loaded_host_is_one_hint_naming_congestion_and_slice_isolation() -> None:
    # a CPU hog beside the agents jitters every path alike: a queue on the link is neither
    # shown nor ruled out, so the hint says both kinds instead of picking one
    paths = mesh(slices=("video", "egov", "data")) + mesh(slices=("best-effort",), loss={"p2>r": 0.05})
    everywhere = {"video", "egov", "data", "best-effort"}
    paths = [
        replace(p, delay_s=BASE_RTT, baseline_delay_s=BASE_RTT, jitter_s=0.005, baseline_jitter_s=0.0005) for p in paths
    ]
    assert everywhere == {p.slice for p in paths}
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [(d.kind, d.slices) for d in diagnoses] == [(CONGESTION_OR_ISOLATION, ("best-effort",))]
    assert kind_parts(diagnoses[0].kind) == ("congestion", "slice-isolation")
    assert any("cannot be told from a starved slice class" in sentence for sentence in diagnoses[0].evidence)


def test_a_few_other_slice_paths_slower_by_chance_do_not_make_a_starved_slice_congestion() -> None:
    # a small network: the only video paths are a1's; both that cross p2-r are slower, and
    # three of its four elsewhere jitter (3 of the 26 paths of known delay elsewhere). Eight
    # times the share elsewhere, but two paths prove no queue (a loaded machine's lateness
    # lands on some paths, not all): both kinds, not congestion
    video = [p for p in mesh(slices=("video",)) if p.source == "a1"]
    through = [p for p in video if crosses(p, "p2>r", "r>p2")]
    jittery = {p.path_id for p in [p for p in video if p not in through][:3]}
    paths = [
        replace(
            p,
            delay_s=BASE_RTT + (0.004 if p in through else 0.0),
            baseline_delay_s=BASE_RTT,
            jitter_s=0.005 if p.path_id in jittery else 0.0005,
            baseline_jitter_s=0.0005,
        )
        for p in video + mesh(slices=("best-effort",), loss={"p2>r": 0.05})
    ]
    assert len(through) == 2 and len(video) == 6
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [(d.kind, d.slices) for d in diagnoses] == [(CONGESTION_OR_ISOLATION, ("best-effort",))]


def test_loss_on_both_directions_of_a_sites_link_is_not_put_on_its_host() -> None:
    # the paths towards a1 cross the same link without crossing host:a1, and they lose too
    diagnoses = diagnose(Epoch(tuple(mesh(loss={"p1>a1": 0.05, "a1>p1": 0.05}))))
    assert diagnoses
    assert not any(name.startswith(("host:", "service:")) for name in named(diagnoses))
    assert {"p1>a1", "a1>p1", "a1"} & named(diagnoses)


def test_a_slice_blackholed_on_a_sites_link_is_not_put_on_its_host_or_reflector() -> None:
    paths = mesh(slices=("video", "egov", "data")) + mesh(slices=("best-effort",), loss={"p2>b1": 1.0, "b1>p2": 1.0})
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [d.kind for d in diagnoses] == ["slice-isolation"]
    assert not any(name.startswith(("host:", "service:")) for name in named(diagnoses))


def test_a_slice_blackholed_both_ways_on_a_link_names_the_link_both_ways() -> None:
    # the slice's probes through p1-c1 lose everything, so none is split by direction: each
    # row crosses both, while the other slices' split rows make the two directions two classes,
    # and the cover needs only one of them
    healthy = mesh(slices=("video", "egov", "data"))
    paths = healthy + mesh(slices=("best-effort",), loss={"c1>p1": 1.0, "p1>c1": 1.0})
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [(d.kind, d.suspects, d.slices) for d in diagnoses] == [
        ("slice-isolation", ("c1>p1", "p1>c1"), ("best-effort",))
    ]
    assert any("named with it: every probe through it in best-effort" in line for line in diagnoses[0].evidence)


def test_a_slice_blackholed_both_ways_names_the_other_direction_its_probes_only_crossed_with_it() -> None:
    # the replies to a1's and a2's probes come back around c1-p1 (via x), so p1>c1 fails more
    # rows than c1>p1; every best-effort probe through c1>p1 also crossed p1>c1 and lost all
    def around(parts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(part for c in parts for part in (("c1>x", "x", "x>p1") if c == "c1>p1" else (c,)))

    paths = mesh(slices=("video", "egov", "data")) + mesh(slices=("best-effort",), loss={"c1>p1": 1.0, "p1>c1": 1.0})
    diagnoses = diagnose(
        Epoch(tuple(replace(p, reverse=around(p.reverse)) if "p1>c1" in p.forward else p for p in paths))
    )
    assert [(d.kind, d.suspects, d.slices) for d in diagnoses] == [
        ("slice-isolation", ("c1>p1", "p1>c1"), ("best-effort",))
    ]
    assert any(line.startswith("c1>p1 named with it") for line in diagnoses[0].evidence)


def test_a_slice_blackholed_one_way_names_one_direction_where_a_good_probe_crossed_the_other() -> None:
    # a1's best-effort probe to e1 came back by a route we do not know: its forward row
    # crosses p1>c1 and lost nothing, which clears that direction in the slice
    back_unknown = replace(probe(route("a1", "e1"), "best-effort"), reverse=(), reverse_lost=None)
    blackholed = mesh(slices=("best-effort",), loss={"c1>p1": 1.0})
    paths = mesh(slices=("video", "egov", "data")) + [p for p in blackholed if p.path_id != back_unknown.path_id]
    diagnoses = diagnose(Epoch((*paths, back_unknown)))
    assert [(d.kind, d.suspects, d.slices) for d in diagnoses] == [("slice-isolation", ("c1>p1",), ("best-effort",))]


def test_a_host_is_still_blamed_when_the_paths_towards_its_site_are_healthy() -> None:
    diagnoses = diagnose(Epoch(tuple(mesh(loss={"host:b1": 0.3}))))
    assert [(d.kind, d.suspects) for d in diagnoses] == [("probe-host", ("host:b1",))]


def detour_back(parts: tuple[str, ...]) -> tuple[str, ...]:
    """A return route via x instead of the direct link from c2 to c1."""
    return tuple(part for c in parts for part in (("c2>x", "x", "x>c1") if c == "c2>c1" else (c,)))


def test_a_route_changed_on_the_way_back_only_names_the_reverse_link_it_left() -> None:
    paths = []
    for p in mesh(slices=("video",)):
        if "c2>c1" in p.reverse:  # the forward route stays: previous_forward is None
            paths.append(
                replace(
                    p,
                    reverse=detour_back(p.reverse),
                    path_changed=True,
                    previous_forward=None,
                    previous_reverse=p.reverse,
                )
            )
        else:
            paths.append(p)
    diagnoses = path_change_diagnoses(tuple(paths), set())
    assert [d.suspects for d in diagnoses] == [("c2>c1",)]
    assert "previous route unknown" not in diagnoses[0].evidence[0]


def test_a_starved_slice_losing_part_of_its_probes_the_other_way_is_fitted_on_its_own() -> None:
    # best-effort: (nearly) nothing passes c1>p1, some is lost on p1>c1; the other slices are healthy
    paths = mesh(slices=("video", "egov", "data")) + mesh(slices=("best-effort",), loss={"c1>p1": 0.99, "p1>c1": 0.05})
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [(d.kind, d.suspects, d.slices) for d in diagnoses] == [
        ("slice-isolation", ("c1>p1",), ("best-effort",)),
        ("slice-isolation", ("p1>c1",), ("best-effort",)),
    ]


def test_the_queue_delay_of_a_starved_slices_paths_is_not_a_second_fault_further_along() -> None:
    # best-effort starved on p2>r (its queue full): its paths through there towards b1 wait
    # 200 ms, the rest of b1's best-effort paths a little. Those slow paths share b1's link,
    # which no best-effort path crosses at its usual delay: the delay is the starved queue's,
    # not a second hint on b1 (the lab's congest case on a loaded machine)
    paths = mesh(slices=("video", "egov", "data")) + mesh(slices=("best-effort",), loss={"p2>r": 0.05})
    out = []
    for p in paths:
        up = 0.0
        if p.slice == "best-effort" and (crosses(p, "p2>r", "r>p2") or "b1" in (p.source, p.target)):
            up = 0.2 if p.target == "b1" and crosses(p, "r>p2") else 0.002
        out.append(replace(p, delay_s=BASE_RTT + up, baseline_delay_s=BASE_RTT, jitter_s=0.0005))
    diagnoses = diagnose(Epoch(tuple(out)))
    assert [(d.kind, d.suspects, d.slices) for d in diagnoses] == [
        ("slice-isolation", ("p2>r", "r>c2"), ("best-effort",))
    ]
