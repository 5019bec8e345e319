"""Classification on the small tree of engine_topology: each kind from a fault whose
answer is known by hand."""

from __future__ import annotations

from dataclasses import replace

from analyzer.rootcause.engine import diagnose
from analyzer.rootcause.model import Epoch, HostHealth
from tests.analyzer.rootcause.engine_support import components, probe
from tests.analyzer.rootcause.engine_topology import SITES, mesh, route

BASE_RTT = 0.010


def crosses(path, link: str) -> bool:
    return link in path.forward or link in path.reverse


def kinds(diagnoses) -> list[tuple[str, tuple[str, ...]]]:
    return [(d.kind, d.suspects) for d in diagnoses]


def test_dead_node_is_node_down() -> None:
    diagnoses = diagnose(Epoch(tuple(mesh(loss={"p2": 1.0}))))
    assert kinds(diagnoses) == [("node-down", ("p2",))]


def test_stamp_failing_while_echo_works_is_reflector_down() -> None:
    stamp = [p for p in mesh(slices=("video",)) if p.target != "b1"]
    stamp += [probe(route(s, "b1"), "video", service_down=True) for s in SITES if s != "b1"]
    echo = mesh(slices=("video",), stamp=False)
    diagnoses = diagnose(Epoch(tuple(stamp + echo)))
    assert kinds(diagnoses) == [("reflector-down", ("service:b1",))]


def test_all_paths_from_one_agent_failing_is_probe_host() -> None:
    diagnoses = diagnose(Epoch(tuple(mesh(loss={"host:a1": 0.5}))))
    assert kinds(diagnoses) == [("probe-host", ("host:a1",))]


def test_unhealthy_agent_telemetry_is_probe_host_and_its_paths_blame_nothing() -> None:
    paths = mesh(loss={"host:a1": 1.0})
    diagnoses = diagnose(
        Epoch(tuple(paths), hosts=(HostHealth("a1", False, "scheduling lag 2.1 s"), HostHealth("b1", True)))
    )
    assert kinds(diagnoses) == [("probe-host", ("host:a1",))]
    assert "scheduling lag 2.1 s" in diagnoses[0].evidence[0]


def test_one_slice_degraded_where_others_are_fine_is_slice_isolation() -> None:
    paths = mesh(slices=("egov", "data", "best-effort")) + mesh(slices=("video",), loss={"p2>r": 0.05})
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert kinds(diagnoses) == [("slice-isolation", ("p2>r", "r>c2"))]
    assert diagnoses[0].slices == ("video",)


def test_one_slice_blackholed_is_slice_isolation() -> None:
    paths = mesh(slices=("egov", "data", "best-effort")) + mesh(slices=("video",), loss={"p1": 1.0})
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert kinds(diagnoses) == [("slice-isolation", ("p1",))]
    assert diagnoses[0].slices == ("video",)


def test_delay_step_without_loss_is_latency_shift() -> None:
    paths = [
        replace(
            p,
            delay_s=BASE_RTT + (0.02 if crosses(p, "p1>c1") else 0.0),
            baseline_delay_s=BASE_RTT,
            jitter_s=0.0005,
            baseline_jitter_s=0.0005,
        )
        for p in mesh()
    ]
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [d.kind for d in diagnoses] == ["latency-shift"]
    assert "p1>c1" in diagnoses[0].suspects and len(diagnoses[0].suspects) <= 2
    assert "20.0 ms" in diagnoses[0].evidence[0]


def test_loss_with_delay_and_jitter_up_is_congestion() -> None:
    paths = []
    for p in mesh(loss={"p1>c1": 0.02}):
        hit = crosses(p, "p1>c1")
        paths.append(
            replace(
                p,
                delay_s=BASE_RTT + (0.03 if hit else 0.0),
                baseline_delay_s=BASE_RTT,
                jitter_s=0.005 if hit else 0.0005,
                baseline_jitter_s=0.0005,
            )
        )
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert kinds(diagnoses) == [("congestion", ("p1>c1",))]


def detour(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The route via x instead of the direct link between c1 and c2."""
    return tuple(c.replace("c1>c2", "c1>x").replace("c2>c1", "x>c1") for c in parts)


def test_path_change_names_the_link_the_paths_left() -> None:
    paths = []
    for p in mesh(slices=("video",)):
        if crosses(p, "c1>c2"):
            paths.append(
                replace(
                    p,
                    forward=detour(p.forward),
                    reverse=detour(p.reverse),
                    path_changed=True,
                    delay_delta_s=0.004,
                    previous_forward=p.forward,
                    previous_reverse=p.reverse,
                )
            )
        else:
            paths.append(p)
    diagnoses = diagnose(Epoch(tuple(paths)))
    assert [d.kind for d in diagnoses] == ["path-change"]
    assert diagnoses[0].suspects == ("c1>c2", "c2>c1")
    assert "+4.0 ms" in diagnoses[0].evidence[0]


def test_components_helper_interleaves_nodes_and_links() -> None:
    assert components(["a", "b", "c"]) == ("a", "a>b", "b", "b>c", "c")


def test_every_agent_unhealthy_at_once_is_one_diagnosis_not_one_per_agent() -> None:
    # The all-in-one's agents share one machine: a stall of it silences them all at once.
    paths = mesh()
    hosts = tuple(HostHealth(site, False, "no shipment for 2.4 s") for site in SITES)
    diagnoses = diagnose(Epoch(tuple(paths), hosts=hosts))
    assert kinds(diagnoses) == [("probe-host", tuple(sorted(f"host:{s}" for s in SITES)))]
    assert diagnoses[0].confidence < 0.9 and "at once" in diagnoses[0].evidence[0]
    # One agent of several in trouble is still that agent's host.
    hosts = (HostHealth(SITES[0], False, "no shipment for 2.4 s"), *(HostHealth(s, True) for s in SITES[1:]))
    assert kinds(diagnose(Epoch(tuple(paths), hosts=hosts))) == [("probe-host", (f"host:{SITES[0]}",))]


def test_a_reflector_dropping_a_few_requests_under_load_is_not_reflector_down() -> None:
    # A CPU hog starves the user-space reflector on b1: 5% of the requests to it go unanswered.
    stamp = [p for p in mesh(slices=("video",)) if p.target != "b1"]
    stamp += [probe(route(s, "b1"), "video", loss={"service:b1": 0.05}) for s in SITES if s != "b1"]
    echo = mesh(slices=("video",), stamp=False)
    assert diagnose(Epoch(tuple(stamp + echo))) == []
    # Half of them unanswered is the reflector's trouble all the same.
    stamp = [p for p in stamp if p.target != "b1"]
    stamp += [probe(route(s, "b1"), "video", loss={"service:b1": 0.5}) for s in SITES if s != "b1"]
    assert kinds(diagnose(Epoch(tuple(stamp + echo)))) == [("reflector-down", ("service:b1",))]
