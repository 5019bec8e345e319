"""The lab as a Python object: bring a topology up in namespaces, inject faults, heal, tear down.

    lab = Lab.from_name("tiny")
    lab.up()
    lab.exec("r1", ["ping", "-6", "-c", "3", lab.address("r3")])
    fault = lab.fault_loss("r1-r2", rate=0.2)
    lab.heal(fault)
    lab.down()

Every site is a network namespace named `xl-<site>` (the prefix can be changed, so
that test runs do not collide); every link a veth pair whose ends are called `to-<peer>`. The
CLI (`xnetmon lab ...`) is a thin layer over this class.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import signal as _signal
import subprocess
import sys
import time
from collections.abc import Sequence

from lab import build, netns, qos, routing
from lab import faults as _faults
from lab.errors import LabError
from lab.netns import CommandFailed
from lab.state import Fault, LabState, Process, StateStore
from lab.topology import (
    NAMESPACE_PREFIX,
    NAMESPACE_PREFIX_PATTERN,
    LabTopology,
    Link,
    TopologyError,
    parse,
    source_text,
)


class Lab:
    """One lab: a topology, the prefix of its namespace names, and the record of what exists."""

    def __init__(
        self,
        topology: LabTopology,
        source: str,
        yaml_text: str,
        store: StateStore | None = None,
        prefix: str = NAMESPACE_PREFIX,
    ):
        if not NAMESPACE_PREFIX_PATTERN.match(prefix):
            raise LabError(f"namespace prefix {prefix!r} must be 'xl', up to 10 letters or digits, then '-'")
        self.topology = topology
        self.source = source
        self.yaml_text = yaml_text
        self.store = store or StateStore()
        self.prefix = prefix

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_name(cls, name_or_path: str, store: StateStore | None = None, prefix: str = NAMESPACE_PREFIX) -> Lab:
        """A built-in topology ("tiny", "small") or a YAML file; raises TopologyError."""
        text, label = source_text(name_or_path)
        return cls(parse(text, label), name_or_path, text, store, prefix)

    @classmethod
    def current(cls, store: StateStore | None = None) -> Lab:
        """The lab that is up now, as recorded in the state file."""
        store = store or StateStore()
        state = store.load()
        if state is None:
            raise LabError("no lab is up (run `xnetmon lab up`)")
        return cls(parse(state.topology_yaml, state.topology), state.topology, state.topology_yaml, store, state.prefix)

    # -- names and addresses other code needs ------------------------------------------------

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def sites(self) -> list[str]:
        return [s.name for s in self.topology.sites]

    @property
    def links(self) -> list[str]:
        return [link.name for link in self.topology.links]

    def namespace(self, site: str) -> str:
        return self.prefix + self.topology.site(site).name

    def address(self, site: str) -> str:
        """The site's loopback (/128): what probes should target and leave from."""
        return self.topology.loopback(site)

    def host_address(self, site: str) -> str:
        return self.topology.host_address(site)

    def host_prefix(self, site: str) -> str:
        return self.topology.host_prefix(site)

    def link(self, name: str) -> Link:
        return self.topology.link(name)

    def interface(self, link: str, site: str) -> str:
        return self.topology.link(link).interface(site)

    def link_address(self, link: str, site: str) -> str:
        return self.topology.link_address(link, site)

    def site_of(self, address: str) -> str | None:
        return self.topology.site_of_address(address)

    def exec_argv(self, site: str, argv: Sequence[str]) -> list[str]:
        return netns.exec_argv(self.namespace(site), argv)

    # -- running things in sites ------------------------------------------------------------

    def exec(
        self, site: str, argv: Sequence[str], *, check: bool = False, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run a command inside a site and wait for it (text output captured)."""
        return netns.run(self.exec_argv(site, argv), stdin=input, check=check, timeout=timeout)

    def popen(self, site: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a command inside a site; the caller owns and must stop it."""
        return subprocess.Popen(self.exec_argv(site, argv), **kwargs)

    def spawn(self, site: str, argv: Sequence[str], purpose: str = "spawned") -> int:
        """Start a background command in a site that the lab owns: `down` stops it."""
        with self.store.locked():
            state = self._require_state()
            process = self._spawn(site, argv, purpose)
            state.processes.append(process)
            self.store.save(state)
            return process.pid

    def _spawn(self, site: str, argv: Sequence[str], purpose: str, cwd: str | None = None) -> Process:
        log = self.store.logs / f"{site}-{purpose}-{time.time_ns()}.log"
        pid = netns.spawn_detached(self.namespace(site), argv, log, cwd=cwd)
        return Process(pid, netns.start_time(pid), site, list(argv), purpose)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            return netns.run(argv, stdin=stdin)
        except CommandFailed as exc:
            raise LabError(str(exc)) from None

    def processes_matching(self, site: str, match: str) -> list[tuple[int, list[str], str]]:
        """(pid, argv, cwd) of processes in `site` whose command line contains `match`."""
        found = []
        for pid in netns.pids_in(self.namespace(site)):
            if pid == os.getpid():
                continue
            argv = netns.cmdline(pid)
            if argv and match in " ".join(argv):
                try:
                    cwd = os.readlink(f"/proc/{pid}/cwd")
                except OSError:
                    cwd = "/"
                found.append((pid, argv, cwd))
        return found

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        state = self._own_state()
        return state is not None and state.complete and all(netns.exists(ns) for ns in state.namespaces)

    def up(self) -> float:
        """Create the lab (tearing down whatever lab the record names first). Returns seconds taken."""
        started = time.monotonic()
        namespaces = [self.namespace(site) for site in self.sites]
        with self.store.locked():
            previous = self.store.load()
            if previous is not None:
                self._teardown(previous)
            strangers = [ns for ns in namespaces if netns.exists(ns)]
            if strangers:
                raise LabError(
                    f"namespace(s) {', '.join(strangers)} exist but no lab record names them; the lab"
                    f" removes only what it created, so delete them yourself (ip netns del NAME)"
                )
            state = LabState(
                topology=self.source, topology_yaml=self.yaml_text, namespaces=namespaces, prefix=self.prefix
            )
            self.store.save(state)  # before creating anything: a crash leaves a record to clean up
            try:
                build.create(self)
            except (CommandFailed, LabError, OSError, subprocess.SubprocessError) as exc:
                self._teardown(state)
                raise LabError(f"lab up {self.name} failed and was rolled back: {exc}") from None
            state.complete = True
            state.up_seconds = round(time.monotonic() - started, 3)
            self.store.save(state)
            return state.up_seconds

    def down(self) -> bool:
        """Remove everything the record says the lab created. Returns False if nothing was up."""
        with self.store.locked():
            state = self.store.load()
            if state is None:
                return False
            self._teardown(state)
            return True

    def _teardown(self, state: LabState) -> None:
        for fault in state.faults:
            _resume_stopped(fault)
        recorded = [p for f in state.faults for p in f.processes] + state.processes
        netns.stop_all([(p.pid, p.started) for p in recorded])
        mine = [ns for ns in state.namespaces if ns.startswith(state.prefix) and netns.exists(ns)]
        # Anything still running in our namespaces (reflectors, agents started by tests)
        # would keep a namespace alive after `netns del`; stop it first.
        inside = [(pid, None) for ns in mine for pid in netns.pids_in(ns) if pid != os.getpid()]
        netns.stop_all(inside, grace=1.0)
        if mine:
            netns.run(
                netns.ip_batch_argv(None, force=True), stdin="".join(f"netns del {ns}\n" for ns in mine), check=False
            )
        self.store.clear()
        left = [ns for ns in mine if netns.exists(ns)]
        if left:
            raise LabError(f"could not delete namespace(s) {', '.join(left)}")

    def _require_state(self) -> LabState:
        state = self.store.load()
        if state is None or not state.complete:
            raise LabError("the lab is not up (run `xnetmon lab up`)")
        if not self._is_mine(state):
            raise LabError(f"the lab that is up is {state.topology!r} ({state.prefix}*), not this one")
        return state

    def _is_mine(self, state: LabState) -> bool:
        """Whether the record describes this lab (and not another one sharing the store)."""
        if state.prefix != self.prefix:
            return False
        # The text it was made from needs no parse: every query of the lab asks (the soak's on
        # every fault and heal), and a parse costs ~5 ms and leaves ~140 objects in reference
        # cycles, which the analyzer's collector thresholds keep for long in a process it shares.
        if state.topology_yaml == self.yaml_text:
            return True
        return parse(state.topology_yaml, state.topology).name == self.topology.name

    def _own_state(self) -> LabState | None:
        state = self.store.load()
        return state if state is not None and self._is_mine(state) else None

    # -- what is true now --------------------------------------------------------------------

    def state(self) -> LabState:
        state = self._own_state()
        if state is None:
            raise LabError("the lab is not up (run `xnetmon lab up`)")
        return state

    def faults(self) -> list[Fault]:
        state = self._own_state()
        return list(state.faults) if state else []

    def path(self, source: str, destination: str) -> tuple[str, ...] | None:
        """The hop list (as sites) that routing gives now, faults included; None if unreachable."""
        state = self._own_state()
        if state is not None:
            pinned = _faults.reroute_path(state, source, destination)
            if pinned is not None:
                return pinned
            return routing.path(
                self.topology, source, destination, _faults.down_links(state), _faults.down_sites(state)
            )
        return routing.path(self.topology, source, destination)

    def status(self) -> dict:
        state = self._own_state()
        topo = self.topology
        dl = _faults.down_links(state) if state else frozenset()
        ds = _faults.down_sites(state) if state else frozenset()
        return {
            "topology": topo.name,
            "up": bool(state and state.complete),
            "up_seconds": state.up_seconds if state else None,
            "prefix": str(topo.plan.prefix),
            "sites": [
                {
                    "name": s.name,
                    "role": s.role.value,
                    "namespace": self.namespace(s.name),
                    "loopback": topo.loopback(s.name),
                    "host_prefix": topo.host_prefix(s.name),
                    "state": "down" if s.name in ds else "up",
                }
                for s in topo.sites
            ],
            "links": [
                {
                    "name": link.name,
                    "cost": link.cost,
                    "bandwidth_mbit": link.bandwidth_mbit,
                    "prefix": topo.link_prefix(link.name),
                    "ends": {
                        end: {"interface": link.interface(end), "address": topo.link_address(link.name, end)}
                        for end in link.ends
                    },
                    "state": "down" if link.name in dl or link.a in ds or link.b in ds else "up",
                }
                for link in topo.links
            ],
            "slices": [{"name": s.name, "dscp": s.dscp, "id": s.slice_id, "share": s.share} for s in topo.slices],
            "faults": [
                {
                    "id": f.id,
                    "kind": f.kind,
                    "started_at": f.started_at,
                    "summary": f.summary,
                    "targets": _faults.targets(f),
                    "hint_kind": _faults.hint_kind(f),
                    "params": f.params,
                }
                for f in (state.faults if state else [])
            ],
        }

    # -- faults ------------------------------------------------------------------------------

    def _inject(self, kind: str, apply, *args) -> str:
        with self.store.locked():
            state = self._require_state()
            fault = Fault(id=state.new_fault_id(kind), kind=kind, started_at=_now(), params={}, summary="")
            try:
                if kind == "reroute":
                    apply(self, fault, state, *args)
                else:
                    apply(self, fault, *args)
                state.faults.append(fault)
                self._apply_shared(state, fault)
            except _faults.FaultError as exc:
                self._undo(fault)
                raise LabError(str(exc)) from None
            except BaseException as exc:
                self._undo(fault)
                if fault in state.faults:
                    state.faults.remove(fault)
                    self._reconcile(state, fault)
                if isinstance(exc, CommandFailed):
                    raise LabError(f"{kind} fault not applied (rolled back): {exc}") from None
                raise
            self.store.save(state)
            return fault.id

    def _apply_shared(self, state: LabState, fault: Fault) -> None:
        """The parts that are computed from all active faults, plus process side effects."""
        if fault.kind in ("down", "congest", "slice-starve"):
            self._reconcile(state, fault)
        if fault.kind == "congest":
            self._start_load(fault)
        if fault.kind == "kill":
            self._kill(fault)

    def _reconcile(self, state: LabState, fault: Fault) -> None:
        if fault.kind == "down":
            build.set_links(self, state)
            build.install_routes(self, _faults.down_links(state), _faults.down_sites(state))
        elif fault.kind in ("congest", "slice-starve"):
            link = self.topology.link(fault.params["link"])
            commands = []
            for sender in fault.params["senders"]:
                settings = _faults.end_settings(self.topology, state, link, sender)
                lines = qos.rebuild_lines(self.topology, link, sender, settings)
                commands.append((netns.tc_batch_argv(self.namespace(sender)), build.batch(lines)))
            netns.run_all(commands)

    def start_delay_line(self, fault: Fault, site: str, queue: int, delay_ms: float) -> None:
        ready = self.store.directory / f"{fault.id}-{site}.ready"
        ready.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "lab.delay",
            "--queue",
            str(queue),
            "--delay-ms",
            f"{delay_ms:g}",
            "--ready-file",
            str(ready),
        ]
        process = self._spawn(site, argv, f"delay-{fault.id}")
        fault.processes.append(process)
        deadline = time.monotonic() + 5
        while not ready.exists():
            if not netns.alive(process.pid, process.started) or time.monotonic() > deadline:
                raise LabError(f"delay forwarder on {site} did not start; see {self.store.logs}")
            time.sleep(0.02)
        ready.unlink(missing_ok=True)

    def _start_load(self, fault: Fault) -> None:
        load = fault.params["load"]
        client, server = load["client"], load["server"]
        link = fault.params["link"]
        server_address = self.link_address(link, server)
        server_argv = ["iperf3", "-s", "-B", server_address, "-p", str(load["port"])]
        fault.processes.append(self._spawn(server, server_argv, f"iperf3-server-{fault.id}"))
        client_argv = [
            "iperf3",
            "-c",
            server_address,
            "-B",
            self.link_address(link, client),
            "-p",
            str(load["port"]),
            "-u",
            "-b",
            load["bitrate"],
            "-l",
            "1200",
            "-t",
            "86400",
            "-S",
            str(load["tos"]),
        ] + (["--bidir"] if load["bidir"] else [])
        deadline = time.monotonic() + 5
        while True:  # the server needs a moment to listen; a client that finds none exits at once
            time.sleep(0.15)
            process = self._spawn(client, client_argv, f"iperf3-client-{fault.id}")
            time.sleep(0.35)
            if netns.alive(process.pid, process.started):
                fault.processes.append(process)
                return
            if time.monotonic() > deadline:
                raise LabError(f"iperf3 load for {fault.id} did not start; see {self.store.logs}")

    def _kill(self, fault: Fault) -> None:
        signum = _faults.SIGNALS[fault.params["signal"]]
        for victim in fault.params["killed"]:
            try:
                os.kill(victim["pid"], signum)
            except ProcessLookupError:
                pass
        if signum == _signal.SIGSTOP:
            return
        deadline = time.monotonic() + 3
        for victim in fault.params["killed"]:
            while netns.alive(victim["pid"]) and time.monotonic() < deadline:
                netns.reap(victim["pid"])
                time.sleep(0.02)

    def _undo(self, fault: Fault) -> list[str]:
        problems = []
        for argv in fault.undo:
            result = netns.run(argv, check=False)
            if result.returncode != 0:
                problems.append(f"`{shlex.join(argv)}`: {result.stderr.strip()}")
        netns.stop_all([(p.pid, p.started) for p in fault.processes])
        return problems

    def loss_drops(self, site: str, fault_id: str) -> int:
        """Packets a loss fault's rule has dropped on arrival at `site` (its DROP counter;
        the Neighbour Discovery ACCEPTs beside it are not counted)."""
        listing = self.exec(site, ["ip6tables", "-w", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"], check=True)
        tag = f"/* {_faults.RULE_TAG}{fault_id} */"  # whole, so loss-1 is not loss-10
        counters = [int(line.split()[0]) for line in listing.stdout.splitlines() if tag in line and " DROP " in line]
        if len(counters) != 1:
            raise LabError(f"{site}: expected one DROP rule of fault {fault_id!r}, found {len(counters)}")
        return counters[0]

    def heal(self, fault_id: str) -> None:
        """Undo one fault exactly; raises LabError naming the active faults if it is unknown."""
        with self.store.locked():
            state = self._require_state()
            fault = state.fault(fault_id)
            if fault is None:
                active = ", ".join(f.id for f in state.faults) or "none"
                raise LabError(f"no active fault {fault_id!r} (active: {active})")
            self._heal(state, fault)

    def heal_all(self) -> list[str]:
        with self.store.locked():
            state = self._require_state()
            healed = []
            for fault in reversed(list(state.faults)):
                self._heal(state, fault)
                healed.append(fault.id)
            return healed

    def _heal(self, state: LabState, fault: Fault) -> None:
        problems = self._undo(fault)
        _resume_stopped(fault)
        state.faults.remove(fault)
        self._reconcile(state, fault)
        if fault.kind == "kill" and fault.params.get("restart"):
            for victim in fault.params["killed"]:
                state.processes.append(self._spawn(fault.params["site"], victim["argv"], "restarted", victim["cwd"]))
        self.store.save(state)
        if problems:
            raise LabError(f"healed {fault.id}, but some undo steps failed: " + "; ".join(problems))

    # One method per fault kind: the Python API that tests and benchmarks use.

    def fault_loss(self, link: str, rate: float, *, from_site: str | None = None, slice: str | None = None) -> str:
        """Random loss of `rate` (0..1) on a link, both directions unless `from_site`, all slices
        unless `slice`. Neighbour Discovery is spared, so that a one-way fault stays one way."""
        return self._inject("loss", _faults.loss, link, rate, from_site, slice)

    def fault_down(self, target: str) -> str:
        """A link ("a-b") or a whole site down; routing reconverges (or blackholes) around it."""
        return self._inject("down", _faults.down, target)

    def fault_congest(
        self,
        link: str,
        *,
        rate_mbit: float = 2.0,
        queue_ms: float = 100.0,
        load_factor: float = 1.5,
        from_site: str | None = None,
        slice: str | None = None,
    ) -> str:
        """Cut a link to `rate_mbit` with a `queue_ms` queue and overload it with iperf3 UDP."""
        return self._inject("congest", _faults.congest, link, rate_mbit, queue_ms, load_factor, from_site, slice)

    def fault_slice_starve(self, link: str, slice: str, *, rate_kbit: int = 8, from_site: str | None = None) -> str:
        """Cut one slice's class on a link to `rate_kbit`; the other slices keep their shares."""
        return self._inject("slice-starve", _faults.slice_starve, link, slice, rate_kbit, from_site)

    def fault_reroute(self, source: str, destination: str, *, via: str | None = None) -> str:
        """Move traffic between two sites (both directions) onto an alternate path."""
        return self._inject("reroute", _faults.reroute, source, destination, via)

    def fault_delay(self, link: str, delay_ms: float, *, from_site: str | None = None, slice: str | None = None) -> str:
        """Add a fixed delay to a link (each direction gets `delay_ms` unless `from_site`)."""
        return self._inject("delay", _faults.delay, link, delay_ms, from_site, slice)

    def fault_kill(self, site: str, match: str, *, signal: str = "TERM", restart: bool = True) -> str:
        """Signal processes in a site whose command line contains `match`; heal restarts them
        (or sends SIGCONT after STOP)."""
        return self._inject("kill", _faults.kill, site, match, signal, restart)


def _resume_stopped(fault: Fault) -> None:
    if fault.kind == "kill" and fault.params.get("signal") == "STOP":
        for victim in fault.params["killed"]:
            try:
                os.kill(victim["pid"], _signal.SIGCONT)
            except ProcessLookupError:
                pass


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["Lab", "LabError", "TopologyError"]
