"""The site agent: reflector, scheduler, path discovery, exporter and shipping in one process.

Windows flow one way: the scheduler closes them, the agent folds them into the metrics
snapshot (what /metrics shows), notes hop-limit changes for discovery, and hands them with
the latest traced paths and its own health to the sink (the analyzer, or nothing). SIGHUP
reloads the configuration: schedules that stay keep their counters; a configuration with
errors is refused and the running plan kept.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from collector.agent.config import ConfigError
from collector.agent.discovery import PathDiscovery
from collector.agent.on_demand import OnDemandProbes
from collector.agent.plan import AgentPlan, load_plan
from collector.agent.scheduler import Scheduler
from collector.contract.records import CollectorHealth, PathObservation, PathWindow
from collector.contract.shipment import ShipmentBatch
from collector.outputs.prometheus.agent import MetricsServer, serve_metrics
from collector.outputs.prometheus.state import MetricsState
from collector.outputs.sinks import HttpSink, ReportsShipFailures, SpoolingSink, WindowSink
from collector.reflector.session_reflector import Reflector
from collector.system import selfstats
from collector.system.clock import ClockStatus
from collector.system.loop_errors import LoopErrors

log = logging.getLogger(__name__)

# How often ended in-situ blocks are looked for: a look walks every flow of every point
# (~16 ms at 4,096 flows).
MARKED_BLOCKS_POLL_S = 0.25


class Agent:
    def __init__(self, plan: AgentPlan, *, sink: WindowSink | None = None, clock: ClockStatus | None = None) -> None:
        self.plan = plan
        self.metrics = MetricsState()
        self.errors = LoopErrors()  # what the agent's loops survived: xnet_collector_errors_total
        self.sink = sink if sink is not None else _sink_for(plan)
        self.reflector = Reflector(plan.reflector) if plan.reflector is not None else None
        self.scheduler = Scheduler(
            plan.site,
            plan.probes,
            plan.window_s,
            self._on_windows,
            plan.source_address,
            clock,
            slice_option_type=plan.slice_option_type,
        )
        self.discovery = (
            PathDiscovery(
                plan.probes,
                plan.trace_period_s,
                plan.trace_proto,
                self._on_observation,
                plan.source_address,
                errors=self.errors,
            )
            if plan.trace_enabled
            else None
        )
        self.on_demand = _on_demand(plan, self.metrics)
        self.flows = _flow_receiver(plan)
        self.captures = _captures(plan, self.flows)
        self.server: MetricsServer | None = None
        self.windows_total = 0
        self._observations: list[PathObservation] = []
        self._stop = asyncio.Event()

    # -- the flow of results -------------------------------------------------------------

    def _on_windows(self, windows: list[PathWindow]) -> None:
        self.windows_total += len(windows)
        self.metrics.apply(windows)
        if self.discovery is not None:
            self.discovery.note_windows(windows)
        self.scheduler.telemetry.take_lag()  # the lag since the last shipment, shipped with it
        health = self._refresh_health()
        if self.sink is not None:
            marked = tuple(self.captures.marked_blocks(self.plan.site)) if self.captures is not None else ()
            batch = ShipmentBatch(
                self.plan.site, tuple(windows), tuple(self._observations), health, time.time_ns(), marked
            )
            self._observations = []
            self.sink.submit(batch)

    def _on_observation(self, observation: PathObservation) -> None:
        self.scheduler.set_fingerprint(observation.target, observation.slice, observation.fingerprint)
        self._observations.append(observation)

    def _refresh_health(self) -> CollectorHealth:
        """Counters read afresh; the lag summary is the one the last shipment took (the health
        loop's refreshes in between ship nothing, so they must not swallow a stall's lag)."""
        telemetry = self.scheduler.telemetry
        health = CollectorHealth(
            site=self.plan.site,
            observed_ns=time.time_ns(),
            scheduling_lag_p99_ns=telemetry.lag_p99_ns,
            scheduling_lag_max_ns=telemetry.lag_max_ns,
            probes_sent_total=telemetry.probes_sent,
            send_errors_total=self.scheduler.send_errors,
            receive_errors_total=self.scheduler.receive_errors,
            socket_drops_total=selfstats.udp_socket_drops(),
            cpu_seconds_total=selfstats.cpu_seconds(),
            sessions=self.scheduler.sessions,
            windows_dropped_total=self.sink.dropped_total if self.sink is not None else 0,
            spool_depth=self.sink.spool_depth if self.sink is not None else 0,
        )
        self.metrics.set_health(health)
        if self.sink is not None:
            self.metrics.set_marked_blocks_dropped(self.plan.site, self.sink.marked_blocks_dropped_total)
        if isinstance(self.sink, ReportsShipFailures):
            self.metrics.set_ship_failures(self.plan.site, self.sink.ship_failures)
        sink_errors = self.sink.errors_total if isinstance(self.sink, SpoolingSink) else {}
        self.metrics.set_errors(self.plan.site, {**self.errors.counts(), **sink_errors})
        if self.reflector is not None:
            self.metrics.set_reflector(self.reflector.stats)
        return health

    # -- running -------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the configuration file; True when the new plan is running."""
        try:
            plan = load_plan(self.plan.config_path)
        except ConfigError as exc:
            log.error("configuration not reloaded, keeping the running plan:\n%s", exc)
            return False
        added, removed = self.scheduler.reload(plan.probes)
        if self.discovery is not None:
            self.discovery.update(plan.probes)
        if self.on_demand is not None:
            self.on_demand.set_targets(p.target for p in plan.probes)
        if self.captures is not None:
            self.captures.reload(plan.capture)
        elif plan.capture is not None:
            log.warning("a new capture section starts with the agent's next start, not on reload")
        self.plan = plan
        log.info("configuration reloaded: %d schedules added, %d removed", added, removed)
        return True

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until `stop()`: probe, discover, export and ship; then flush and close everything."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.reflector is not None:
            self.reflector.start()
        try:
            if self.flows is not None:
                self.flows.start()
            if self.captures is not None:
                self.captures.start()
            if self.on_demand is not None:
                await loop.run_in_executor(None, self.on_demand.start)
            self.server = serve_metrics(
                self.metrics, self.plan.metrics_listen, flows=self.flows, captures=self.captures
            )
            if self.plan.start_delay_s:
                try:  # the reflector already answers; probing waits (a stop ends the wait)
                    await asyncio.wait_for(self._stop.wait(), self.plan.start_delay_s)
                except TimeoutError:
                    pass
            tasks = [asyncio.create_task(self.scheduler.run(self._stop)), asyncio.create_task(self._health_loop())]
            if self.captures is not None and self.sink is not None:
                tasks.append(asyncio.create_task(self._marked_blocks_loop()))
            if self.discovery is not None:
                tasks.append(asyncio.create_task(self.discovery.run(self._stop)))
            await asyncio.gather(*tasks)
        finally:
            self.scheduler.close()
            if self.on_demand is not None:
                await loop.run_in_executor(None, self.on_demand.stop)
            if self.server is not None:
                self.server.stop()
            if self.reflector is not None:
                self.reflector.stop()
            if self.flows is not None:
                self.flows.stop()
            if self.captures is not None:
                self.captures.stop()
            if self.sink is not None:
                await loop.run_in_executor(None, self.sink.close)

    async def _marked_blocks_loop(self) -> None:
        """In-situ blocks leave as soon as their counting point ends them, in a shipment of
        their own: waiting for the next window would add up to a window to fault demarcation
        (a block ends half a block period after its flip; windows close once a window_s)."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), MARKED_BLOCKS_POLL_S)
            except TimeoutError:
                pass
            with self.errors.survive("insitu", "shipping in-situ blocks"):
                self._ship_marked_blocks()  # also once more as the agent stops: none ended is left behind

    def _ship_marked_blocks(self) -> None:
        assert self.captures is not None and self.sink is not None
        marked = tuple(self.captures.marked_blocks(self.plan.site))
        if marked:
            health = self._refresh_health()
            self.sink.submit(ShipmentBatch(self.plan.site, (), (), health, time.time_ns(), marked))

    async def _health_loop(self) -> None:
        """Health and reflector counters refresh every window even when no path closes one."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.plan.window_s)
            except TimeoutError:
                with self.errors.survive("health", "refreshing the agent's own figures"):
                    self._refresh_health()


def _flow_receiver(plan: AgentPlan):
    if plan.flows is None:
        return None
    from collector.flow_export.receiver import FlowReceiver

    # With captures too, one classifier: their records and the exports count in the same slices.
    return FlowReceiver(plan.flows, classifier=plan.capture.classifier if plan.capture is not None else None)


def _on_demand(plan: AgentPlan, metrics: MetricsState) -> OnDemandProbes | None:
    if plan.bus is None or plan.on_demand is None:
        return None
    return OnDemandProbes(plan.site, plan.bus, plan.on_demand, (p.target for p in plan.probes), metrics)


def _captures(plan: AgentPlan, flows):
    if plan.capture is None:
        return None
    from collector.capture.agent_captures import AgentCaptures

    if flows is None:
        return AgentCaptures(plan.capture)
    return AgentCaptures(plan.capture, flows.counters, flows.lock)  # one set of counters, one /flows/top


def _sink_for(plan: AgentPlan) -> WindowSink | None:
    if plan.bus is not None:
        from collector.outputs.bus_sink import BusSink

        assert plan.spool_dir is not None  # resolve_plan gives one whenever there is a bus
        return BusSink(plan.bus, plan.site, plan.spool_dir, plan.spool_max_windows)
    if not plan.analyzer_url:
        return None
    assert plan.spool_dir is not None  # resolve_plan gives one whenever there is an analyzer
    return HttpSink(plan.analyzer_url, plan.analyzer_token or "", plan.spool_dir, plan.spool_max_windows)


def run_agent(plan: AgentPlan) -> int:
    """`xnetmon agent`: run until SIGINT/SIGTERM; SIGHUP reloads the configuration."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = Agent(plan)
    capture_errors: tuple[type[Exception], ...] = ()  # an interface that cannot be captured
    if plan.capture is not None:
        from collector.capture.agent_captures import CaptureError

        capture_errors = (CaptureError,)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, agent.stop)
        loop.add_signal_handler(signal.SIGHUP, agent.reload)
        log.info(
            "agent %s: %d schedules, metrics on http://[%s]:%d/metrics",
            plan.site,
            len(plan.probes),
            *plan.metrics_listen,
        )
        await agent.run()

    try:
        asyncio.run(main())
    except capture_errors as exc:
        log.error("%s", exc)
        return 1
    return 0
