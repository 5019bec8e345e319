"""Partitions and their combiner on a real nats-server: the same windows judged by one
analyzer and by two partition analyzers and a combiner give equal slice verdicts, interval by
interval; a report that is not one is refused and counted."""

from __future__ import annotations

import asyncio

import nats
import pytest

from analyzer.bus_intake import BusIntake
from analyzer.combiner import PartialsCombiner
from analyzer.combiner_intake import CombinerIntake
from analyzer.partials import PartialsOutbox, partials_subject
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.bus.subjects import message_id, subject
from collector.contract.codec import encode_body
from tests.analyzer.partition_support import INTERVALS, NOW_NS, SITES, SLICES, TARGETS, site_batch
from tests.analyzer_support import T0
from tests.bus_support import connect_options, running_bus
from tests.support import wait_until
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")
PARTITIONS = 2


def publish(pki, server, bodies: list[tuple[str, bytes]], as_analyzer: bool = False) -> None:
    """Each (site, body) with the site's certificate on its windows subject (or, as the
    analyzers, on partition 0's reports subject)."""

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
                await client.jetstream().publish(name, body, headers={"Nats-Msg-Id": message_id("windows", site, body)})
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
