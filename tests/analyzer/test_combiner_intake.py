"""Partitions and their combiner on a real nats-server: the same windows judged by one
analyzer and by two partition analyzers and a combiner give equal slice verdicts, interval by
interval, and equal root-cause hints; a report or an epoch that is not one is refused and
counted."""

from __future__ import annotations

import asyncio

import nats
import pytest

from analyzer.bus_intake import BusIntake
from analyzer.combiner import PartialsCombiner
from analyzer.combiner_epochs import CombinedInference, EpochAssembler
from analyzer.combiner_intake import CombinerIntake
from analyzer.partial_evidence import EVIDENCE_HEADER, EvidenceOutbox
from analyzer.partials import PartialsOutbox, partials_subject
from analyzer.service import RootCauseRunner
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.bus.subjects import message_id, subject
from collector.contract.codec import encode_body
from tests.analyzer.partition_support import (
    AGENT_PARTITIONS,
    AGENTS,
    FAULT_FROM,
    INTERVALS,
    LAB_NAMES,
    NOW_NS,
    RC_INTERVALS,
    SITES,
    SLICES,
    TARGETS,
    site_batch,
    traced_batch,
)
from tests.analyzer_support import T0, W
from tests.bus_support import connect_options, running_bus
from tests.support import wait_until
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")
PARTITIONS = 2


def publish(pki, server, bodies: list[tuple[str, bytes]], as_analyzer: bool = False, headers=None) -> None:
    """Each (site, body) with the site's certificate on its windows subject (or, as the
    analyzers, on partition 0's reports subject, with `headers`)."""

    async def run() -> None:
        for site, body in bodies:
            endpoint = (
                bus_setup.analyzer_endpoint(pki, (server.url,))
                if as_analyzer
                else bus_setup.site_endpoint(pki, site, (server.url,))
            )
            client = await nats.connect(**connect_options(endpoint))
            try:
                name = partials_subject(0) if as_analyzer else subject("windows", site)
                await client.jetstream().publish(
                    name, body, headers={"Nats-Msg-Id": message_id("windows", site, body), **(headers or {})}
                )
            finally:
                await client.close()

    asyncio.run(run())


def test_two_partitions_and_their_combiner_give_the_slice_verdicts_of_one_analyzer(tmp_path):
    with running_bus(tmp_path, SITES, partitions=PARTITIONS) as (pki, server):
        endpoint = bus_setup.analyzer_endpoint(pki, (server.url,))
        clock = {"clock": lambda: NOW_NS}
        outboxes = [PartialsOutbox(i, PARTITIONS) for i in range(PARTITIONS)]
        stores = [WindowStore(default_policies(), slice_closed=outbox) for outbox in outboxes]
        intakes = [
            BusIntake(store, endpoint, f"partition-{i}", partition=i, partials=outbox, **clock)
            for i, (store, outbox) in enumerate(zip(stores, outboxes, strict=True))
        ]
        for intake in intakes:  # the partitioned stream made before the analyzer of every partition reads it
            wait_until(intake.connected.is_set, what=f"{intake.durable} connected")
        single = WindowStore(default_policies())
        intakes.append(BusIntake(single, endpoint, "single", **clock))
        combined = WindowStore(default_policies())
        combiner = PartialsCombiner(combined, PARTITIONS)
        combiner_intake = CombinerIntake(combiner, endpoint, **clock)
        for intake in [*intakes, combiner_intake]:
            wait_until(intake.connected.is_set, what=f"{intake.durable} connected")
        per_interval = len(SITES) * len(SLICES) * len(TARGETS)
        statuses = set()
        for step, seq in enumerate(range(T0, T0 + INTERVALS)):
            publish(pki, server, [(site, encode_body(site_batch(site, seq))) for site in SITES])
            wait_until(
                lambda step=step, combined=combined: (
                    single.counters["windows_ingested"] == (step + 1) * per_interval
                    and combined.counters["intervals_closed"] == single.counters["intervals_closed"]
                ),
                what=f"interval {step} judged by the single analyzer and the combiner",
            )
            expected = single.slice_verdict_map(NOW_NS)
            assert combined.slice_verdict_map(NOW_NS) == expected, f"interval {step}"
            if step == INTERVALS // 2:  # a combiner restarted: its checkpoint, then the reports after it
                combiner_intake.stop()
                assert combiner_intake.checkpoints_total >= 1 and combiner_intake.checkpoint_failures == 0
                combined = WindowStore(default_policies())
                combiner = PartialsCombiner(combined, PARTITIONS)
                combiner_intake = CombinerIntake(combiner, endpoint, **clock)
                wait_until(combiner_intake.connected.is_set, what="the restarted combiner connected")
                assert combiner_intake.restored_seq
                assert combined.slice_verdict_map(NOW_NS) == expected, "restored from the checkpoint"
            statuses |= {v.status for v in expected.values() if v is not None}
        publish(pki, server, [("cnty0", b'{"partition": 7}')], as_analyzer=True)
        wait_until(lambda: combiner_intake.refused_total == 1, what="the bad report refused")
        for intake in [*intakes, combiner_intake]:
            intake.stop()
    assert statuses - {"ok", "no-data"}  # the verdicts compared were not all alike
    assert {k.source for k in stores[0].path_keys()}.isdisjoint({k.source for k in stores[1].path_keys()})
    assert all(store.counters["windows_ingested"] for store in stores)  # both partitions had sites
    assert combined.counters["intervals_closed"] == len(SLICES) * INTERVALS
    assert combiner.intervals_by_grace == 0 and combiner.partials_late == 0
    assert combiner_intake.errors_total == 0 and all(i.errors_total == 0 for i in intakes)


def quiet_runner(store: WindowStore, **options) -> RootCauseRunner:
    """A runner this test drives interval by interval (`run_once`), its evidence named after
    the small lab's sites, its clock the stores'."""
    runner = RootCauseRunner(store, declared_names=LAB_NAMES, poll_s=3600.0, **options)
    runner.builder.clock = lambda: NOW_NS
    return runner


def test_two_partitions_and_their_combiner_give_the_root_cause_hints_of_one_analyzer(tmp_path):
    with running_bus(tmp_path, AGENTS, partitions=PARTITIONS) as (pki, server):
        endpoint = bus_setup.analyzer_endpoint(pki, (server.url,))
        clock = {"clock": lambda: NOW_NS}
        outboxes = [PartialsOutbox(i, PARTITIONS) for i in range(PARTITIONS)]
        evidence = [EvidenceOutbox(i, PARTITIONS, W) for i in range(PARTITIONS)]
        stores = [WindowStore(default_policies(), slice_closed=outbox) for outbox in outboxes]
        runners = [quiet_runner(store, diagnose=outbox) for store, outbox in zip(stores, evidence, strict=True)]
        intakes = [
            BusIntake(store, endpoint, f"partition-{i}", partition=i, partials=box, evidence=epochs, **clock)
            for i, (store, box, epochs) in enumerate(zip(stores, outboxes, evidence, strict=True))
        ]
        for intake in intakes:
            wait_until(intake.connected.is_set, what=f"{intake.durable} connected")
        single = WindowStore(default_policies())
        single_runner = quiet_runner(single)
        intakes.append(BusIntake(single, endpoint, "single", **clock))
        inference = CombinedInference(EpochAssembler(PARTITIONS, W))
        combiner_intake = CombinerIntake(
            PartialsCombiner(WindowStore(default_policies()), PARTITIONS), endpoint, inference=inference, **clock
        )
        for intake in [*intakes, combiner_intake]:
            wait_until(intake.connected.is_set, what=f"{intake.durable} connected")
        per_interval = len(AGENTS) * (len(AGENTS) - 1) * len(SLICES)
        inferred, hinted = 0, []
        for step, seq in enumerate(range(T0, T0 + RC_INTERVALS)):
            faulty = step >= FAULT_FROM
            publish(pki, server, [(site, encode_body(traced_batch(site, seq, faulty))) for site in AGENTS])
            wait_until(
                lambda step=step: (
                    single.counters["windows_ingested"] == (step + 1) * per_interval
                    and sum(s.counters["windows_ingested"] for s in stores) == (step + 1) * per_interval
                ),
                what=f"interval {step} taken by the single analyzer and the partitions",
            )
            at_ns = single.judged_through_ns
            wait_until(
                lambda at_ns=at_ns: all(s.judged_through_ns == at_ns for s in stores),
                what=f"the partitions judged through {at_ns}",
            )
            if at_ns == 0 or at_ns <= (single_runner.recent[-1][0] if single_runner.recent else 0):
                continue
            for runner in [single_runner, *runners]:
                runner.run_once(at_ns)
            inferred += 1
            wait_until(lambda n=inferred: inference.epochs == n, what=f"inference of the epoch ending {at_ns}")
            assert inference.hints() == single_runner.hints(), f"interval {step}"
            union = inference.last_epoch
            single_epoch = single_runner.last_epoch
            assert union is not None and single_epoch is not None
            assert union.paths == tuple(sorted(single_epoch.paths, key=lambda p: p.path_id))
            assert sorted(union.hosts, key=lambda h: h.site) == sorted(single_epoch.hosts, key=lambda h: h.site)
            if not faulty:
                assert single_runner.hints() == (), f"a healthy interval {step} gave hints"
            hinted.append(single_runner.hints())
        # the reverse routes of partition 0's paths live in partition 1: filled by the union only
        assert any(p.reverse is None for p in runners[0].last_epoch.paths)
        assert all(p.reverse is not None for p in inference.last_epoch.paths)
        publish(pki, server, [("core", b'{"partition": 0}')], as_analyzer=True, headers={EVIDENCE_HEADER: "1"})
        wait_until(lambda: combiner_intake.refused_total == 1, what="the bad epoch refused")
        for intake in [*intakes, combiner_intake]:
            intake.stop()
        for runner in [single_runner, *runners]:
            runner.stop()
    assert [{k.source for k in store.path_keys()} for store in stores] == list(AGENT_PARTITIONS)
    assert inferred >= RC_INTERVALS - 2 and inference.skipped == 0
    (hint,) = hinted[-1]  # the fault, localised on its link alone
    assert (hint.kind, hint.suspects) == ("one-direction", ("prov1>core",))
    assert all(runner.hints() == () for runner in runners)  # partitions run no engine
    assert all(outbox.dropped == 0 for outbox in evidence)
    assert combiner_intake.errors_total == 0 and all(i.errors_total == 0 for i in intakes)
