"""Probes operators ask for over the bus: the agent's side of `collector.bus.probe_requests`.

Each accepted request runs the local command, `xnetmon probe KIND ...`, as a child process:
the very code and output of a probe run by hand at the site, and none of the scheduler's
time (another process, not another thread of this one), so scheduled probing keeps its lag.
Every line it prints goes back within a tick (`LINES_EVERY_S`), the lines of a tick in one
batch: the thread wakes once a tick for every running probe, where a wake-up, a publish and
a socket write per line took the GIL from scheduled probing ~300 times a second with ten
probes running. A cancel is the Ctrl-C of the local command (SIGINT), so its summary still
prints. All of it runs on one thread of its own with its own event loop and bus connection;
the probes it starts run niced and SCHED_BATCH below the agent, within its scheduling group,
so that when CPU is short the scheduled probing goes first.

Who may ask is the bus's business (only operators publish on `xnetprobe.SITE`, and this
agent subscribes to its own subject only); what may be asked is this module's: the target
must resolve only to this agent's configured targets or addresses inside its allowed
prefixes, count, rate and duration are bounded, and at most `max_concurrent` run at once
(the next is refused with the reason). Every request is logged with its requester.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType

import nats

from collector.agent.probe_output import OutputPipe
from collector.bus.connection import BusEndpoint, bus_event_loop
from collector.bus.probe_requests import (
    LINES_EVERY_S,
    Accepted,
    BadProbeMessage,
    End,
    ProbeCancel,
    ProbeReply,
    ProbeStart,
    Refused,
    batches,
    command_args,
    decode_control,
    encode_reply,
    request_subject,
    requester_of,
)
from collector.contract.records import Target
from collector.outputs.prometheus.state import MetricsState, OnDemandCounters

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PROBE_COMMAND = (sys.executable, "-m", "xnetmon", "probe")
RESOLVE_TIMEOUT_S = 5.0
END_GRACE_S = 30.0  # past its duration bound (plus timeouts) a probe gets SIGINT, then SIGKILL
KILL_AFTER_S = 5.0
STOP_TIMEOUT_S = 10.0
RECONNECT_WAIT_S = 2.0
NICE_INCREMENT = 10  # on-demand probes run this much nicer than the agent
BELOW_THE_AGENT = ("chrt", "--batch", "0", "nice", "-n", str(NICE_INCREMENT))  # each execs the next
DEFAULT_INTERVAL_S = {"icmp": 1.0, "stamp": 1.0, "trace": 0.25}  # the commands' own defaults


@dataclass(frozen=True, slots=True)
class OnDemandLimits:
    allowed_prefixes: tuple[Network, ...] = ()
    max_concurrent: int = 10
    max_count: int = 1000
    min_interval_s: float = 0.01
    max_duration_s: float = 600.0


class Refusal(Exception):
    """A request this agent will not run; `outcome` is its metric label."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome


@dataclass(slots=True)
class _Running:
    request: ProbeStart
    requester: str
    process: asyncio.subprocess.Process
    cancelled: bool = False


@dataclass(slots=True)
class _Counts:
    requests: Counter = field(default_factory=Counter)
    errors: int = 0


class OnDemandProbes:
    """`start()` connects and answers `xnetprobe.SITE` until `stop()`."""

    def __init__(
        self,
        site: str,
        endpoint: BusEndpoint,
        limits: OnDemandLimits,
        targets: Iterable[Target] = (),
        metrics: MetricsState | None = None,
        command: tuple[str, ...] = PROBE_COMMAND,
    ) -> None:
        self.site = site
        self.endpoint = endpoint
        self.limits = limits
        self.command = command
        self.metrics = metrics
        self.set_targets(targets)
        self._running: dict[str, _Running] = {}  # by request id, once its process runs
        self._slots: set[str] = set()  # request ids admitted and not yet ended
        self._counts = _Counts()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks = _Ticks(LINES_EVERY_S)
        self._publish()

    def set_targets(self, targets: Iterable[Target]) -> None:
        """This agent's configured targets (again at a reload): their addresses may be probed,
        and a request may name one by its name."""
        addresses: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
        for target in targets:
            with contextlib.suppress(ValueError):
                addresses[target.name] = ipaddress.ip_address(target.address)
        self._names = MappingProxyType(addresses)
        self._targets = frozenset(addresses.values())

    # -- running -------------------------------------------------------------------------

    def start(self, ready_timeout_s: float = 5.0) -> None:
        """Start its thread; wait at most `ready_timeout_s` for it to listen (it carries on
        trying to reach the bus after that)."""
        self._thread = threading.Thread(target=self._run_thread, name="xnetmon-on-demand", daemon=True)
        self._thread.start()
        self._ready.wait(ready_timeout_s)

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S + KILL_AFTER_S)

    @property
    def in_flight(self) -> int:
        return len(self._slots)

    def _run_thread(self) -> None:
        try:
            with asyncio.Runner(loop_factory=bus_event_loop) as runner:
                runner.run(self._main())
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        client = await self._connect()
        if client is None:
            return  # stopped before the bus answered
        tasks: set[asyncio.Task] = set()
        try:

            async def on_message(message) -> None:
                task = asyncio.create_task(self._serve(client, message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            await client.subscribe(request_subject(self.site), cb=on_message)
            await client.flush()
            log.info("on-demand probes: answering %s", request_subject(self.site))
            self._ready.set()
            await self._stopping.wait()
        finally:
            for running in list(self._running.values()):
                running.cancelled = True
                _signal(running.process, signal.SIGINT)
            if tasks:
                await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for running in list(self._running.values()):
                _signal(running.process, signal.SIGKILL)
            await client.drain()

    async def _connect(self):
        """The bus connection, tried again until it answers or the agent stops (an agent
        starts whether or not the bus is up; nats-py reconnects by itself only once connected)."""
        assert self._stopping is not None
        while True:
            try:
                return await nats.connect(**self.endpoint.connect_options())
            except Exception as exc:
                self._counts.errors += 1
                self._publish()
                log.warning("on-demand probes: bus not reached (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RECONNECT_WAIT_S)
                return None

    # -- one message -----------------------------------------------------------------------

    async def _serve(self, client, message) -> None:
        requester = requester_of(message.reply or "")
        kind = "-"
        try:
            if requester is None:
                raise Refusal("refused_invalid", f"reply subject {message.reply!r} is not a probe reply subject")
            try:
                control = decode_control(message.data)
            except BadProbeMessage as exc:
                raise Refusal("refused_invalid", f"not a probe request: {exc}") from None
            if isinstance(control, ProbeCancel):
                self._cancel(control, requester)
                return
            kind = control.kind
            request = await self._admit(control)
            try:
                await self._run(client, message.reply, request, requester)
            finally:
                self._slots.discard(request.id)
                self._publish()
        except Refusal as refusal:
            log.warning("probe request from %s refused: %s", requester or "?", refusal)
            self._count(kind, refusal.outcome)
            if requester is not None:
                await self._reply(
                    client, message.reply, Refused(str(refusal), refusal.outcome.removeprefix("refused_"))
                )
        except Exception:
            log.exception("probe request from %s", requester or "?")
            self._counts.errors += 1
            self._publish()

    def _cancel(self, cancel: ProbeCancel, requester: str) -> None:
        running = self._running.get(cancel.id)
        if running is None or running.requester != requester:
            log.info("cancel of probe %s from %s: no such probe running", cancel.id, requester)
            return
        log.info("probe %s cancelled by %s", cancel.id, requester)
        running.cancelled = True
        _signal(running.process, signal.SIGINT)

    async def _admit(self, request: ProbeStart) -> ProbeStart:
        """The request as it will run (its count bounded), or Refusal."""
        limits = self.limits
        if len(self._slots) >= limits.max_concurrent:  # refused before any work; _reserve decides
            self._reserve(request.id)
        count = request.count
        if count is None and request.kind != "trace":
            count = limits.max_count  # the local command's "until Ctrl-C", bounded
            request = request.model_copy(update={"count": count})
        if count is not None and count > limits.max_count:
            raise Refusal("refused_limits", f"count {count} is over this agent's bound of {limits.max_count}")
        if request.interval is not None and request.interval < limits.min_interval_s:
            raise Refusal(
                "refused_limits",
                f"interval {request.interval:g} s is under this agent's bound of {limits.min_interval_s:g} s",
            )
        if count is not None:  # a trace without --report is bounded by its hops and timeout
            duration = count * (request.interval or DEFAULT_INTERVAL_S[request.kind])
            if duration > limits.max_duration_s:
                raise Refusal(
                    "refused_limits",
                    f"count x interval is {duration:g} s, over this agent's bound of {limits.max_duration_s:g} s",
                )
        named = self._names.get(request.target)
        if named is not None:  # one of this agent's targets by its name: probed at its address
            request = request.model_copy(update={"target": named.compressed})
        else:
            await self._check_target(request.target)
        self._reserve(request.id)  # after the last await: no other request can slip in between
        return request

    def _reserve(self, request_id: str) -> None:
        if len(self._slots) >= self.limits.max_concurrent:
            raise Refusal(
                "refused_busy",
                f"{len(self._slots)} on-demand probes are running on {self.site}, "
                f"at most {self.limits.max_concurrent}: try again when one has finished",
            )
        if request_id in self._slots:
            raise Refusal("refused_invalid", f"probe {request_id} is already running")
        self._slots.add(request_id)
        self._publish()

    async def _check_target(self, target: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(target, None, type=socket.SOCK_DGRAM), RESOLVE_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise Refusal("refused_target", f"cannot resolve {target!r} on {self.site}: {exc}") from None
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
        outside = sorted(str(a) for a in addresses if not self._allowed(a))
        if outside:
            prefixes = ", ".join(map(str, self.limits.allowed_prefixes)) or "none"
            raise Refusal(
                "refused_target",
                f"target {target} ({', '.join(outside)}) is neither a target of {self.site}'s agent "
                f"nor inside its allowed prefixes ({prefixes})",
            )

    def _allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return address in self._targets or any(address in net for net in self.limits.allowed_prefixes)

    async def _run(self, client, reply: str, request: ProbeStart, requester: str) -> None:
        process, pipes = await self._spawn(request)
        running = _Running(request, requester, process)
        self._running[request.id] = running
        log.info("probe %s from %s started: xnetmon probe %s", request.id, requester, " ".join(command_args(request)))
        outcome = "failed"
        ended = False
        try:
            await self._reply(client, reply, Accepted(self.site))
            overrun = asyncio.get_running_loop().call_later(self._deadline_s(request), self._overrun, running)
            try:
                await self._forward(client, reply, pipes)
                code = await process.wait()
            finally:
                overrun.cancel()
            outcome = "cancelled" if running.cancelled else ("completed" if code == 0 else "failed")
            await self._reply(client, reply, End(code, running.cancelled))
            ended = True
            log.info("probe %s from %s ended: %s, exit status %d", request.id, requester, outcome, code)
        finally:
            for pipe in pipes:
                pipe.close()
            if process.returncode is None:
                _signal(process, signal.SIGKILL)
                await process.wait()
            if not ended:  # whatever went wrong here, the requester is not left waiting
                await self._reply(client, reply, End(process.returncode or 1, running.cancelled))
            del self._running[request.id]
            self._count(request.kind, outcome)

    async def _spawn(self, request: ProbeStart) -> tuple[asyncio.subprocess.Process, tuple[OutputPipe, ...]]:
        """The probe command, started, and the read ends of its stdout and stderr.

        Below the scheduler in the CPU's queue (chrt(1) and nice(1) exec the probe: signals
        reach it): niced and SCHED_BATCH (a probe's wake-up does not preempt the scheduler), the
        probe yields to scheduled probing when CPU is short. It stays in the agent's session:
        with the kernel's autogroups (Debian's default) a session of its own is a scheduling
        group of its own, weighed as much as the agent's whole group whatever its nice value,
        so ten probes in ten sessions outweighed the agent ten to one. Its own process group
        keeps a Ctrl-C at the agent's terminal from reaching it. Not this thread: it answers
        at once. Its output goes to plain pipes that `_forward` reads once a tick, not to the event
        loop's stream readers, which would wake this thread (and take the GIL from scheduled
        probing) for every line printed."""
        argv = [*BELOW_THE_AGENT, *self.command, *command_args(request)]
        fds: list[int] = []
        try:
            for _ in ("stdout", "stderr"):
                fds += os.pipe()
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fds[1],
                stderr=fds[3],
                process_group=0,  # a Ctrl-C at the agent's terminal is not the requester's
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each line leaves as it is printed
            )
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise Refusal("refused_failed", f"cannot start the probe on {self.site}: {exc}") from None
        os.close(fds[1])  # the child's ends: the pipes end when the child closes them
        os.close(fds[3])
        return process, (OutputPipe(fds[0], "stdout"), OutputPipe(fds[2], "stderr"))

    def _deadline_s(self, request: ProbeStart) -> float:
        return self.limits.max_duration_s + (request.timeout or 2.0) + END_GRACE_S

    def _overrun(self, running: _Running) -> None:
        log.warning("probe %s overran its time: stopped", running.request.id)
        _signal(running.process, signal.SIGINT)
        assert self._loop is not None
        self._loop.call_later(KILL_AFTER_S, _signal, running.process, signal.SIGKILL)

    async def _forward(self, client, reply: str, pipes: tuple[OutputPipe, ...]) -> None:
        """What the probe prints, in batches: once a tick, shared by every running probe (one
        wake-up and one socket write for all of them), until it closed both pipes."""
        while not all(pipe.ended for pipe in pipes):
            await self._ticks.next()
            for batch in batches(line for pipe in pipes for line in pipe.read()):
                await self._reply(client, reply, batch)

    async def _reply(self, client, reply: str, message: ProbeReply) -> None:
        try:
            await client.publish(reply, encode_reply(message))
        except Exception as exc:  # the requester loses a line; the probe and the agent go on
            log.warning("probe reply to %s not sent: %s", reply, exc)
            self._counts.errors += 1
            self._publish()

    # -- counters ----------------------------------------------------------------------------

    def _count(self, kind: str, outcome: str) -> None:
        self._counts.requests[(kind, outcome)] += 1
        self._publish()

    def counters(self) -> OnDemandCounters:
        return OnDemandCounters(MappingProxyType(dict(self._counts.requests)), len(self._slots), self._counts.errors)

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.set_on_demand(self.counters())


class _Ticks:
    """One wake-up every `period_s`, shared by whoever waits for it meanwhile."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._tick: asyncio.Future | None = None

    async def next(self) -> None:
        if self._tick is None or self._tick.done():
            loop = asyncio.get_running_loop()
            self._tick = loop.create_future()
            loop.call_later(self.period_s, _resolve, self._tick)
        await asyncio.shield(self._tick)  # one waiter cancelled leaves the tick to the others


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _signal(process: asyncio.subprocess.Process, signum: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
