"""nats-server with JetStream, started by this process on free ports: for the all-in-one
deployment and for tests. Its configuration comes from `xnetmon.bus_setup` (TLS with
client certificates, per-site permissions); `stop()` (or `kill()`) and `start()` again keep
the ports and the store, as a restarted server would. `NatsCluster` runs a cluster of them
(routes over TLS, JetStream on each) and waits for its JetStream meta leader.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from xnetmon import bus_setup
from xnetmon.bus_setup import ClusterNode, ServerPorts, server_config
from xnetmon.free_ports import free_port

NATS_SERVER = "nats-server"
READY_TIMEOUT_S = 30.0
READY_LINE = b"Server is ready"


class NatsServer:
    """nats-server on `host` with the PKI and sites of `pki_dir`, its store in `work_dir`."""

    def __init__(
        self,
        pki_dir: str | Path,
        work_dir: str | Path,
        host: str = "127.0.0.1",
        *,
        ports: ServerPorts | None = None,
        wrap: Callable[[list[str]], list[str]] = list,
        partitions: int | None = None,
        node: str | None = None,
    ) -> None:
        """`ports`: free ones on `host` unless given; `wrap` turns the command into the one
        to run (the all-in-one runs it inside the lab's core namespace); `partitions`: the
        sites' subjects mapped into that many partitions; `node`: run as that node of the
        PKI directory's cluster (`bus_setup.cluster_nodes`), on its ports."""
        binary = shutil.which(NATS_SERVER) or shutil.which(NATS_SERVER, path="/usr/sbin:/usr/bin")
        if binary is None:
            raise FileNotFoundError("nats-server is not installed (Debian package nats-server)")
        self.binary = binary
        self.host = host
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.pki_dir = Path(pki_dir)
        if ports is None and node is not None:  # an unknown node: server_config names the known ones
            ports = next((n.ports for n in bus_setup.cluster_nodes(self.pki_dir) if n.name == node), None)
        self.ports = ports or ServerPorts(host, free_port(host), host, free_port(host))
        self.wrap = wrap
        self.partitions = partitions
        self.config_file = self.work_dir / "nats-server.conf"
        self._write_config()
        self.log_file = self.work_dir / "nats-server.log"
        self._process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"tls://{_bracketed(self.host)}:{self.ports.port}"

    @property
    def pid(self) -> int | None:
        """The running server's process id (for its CPU time), None while stopped."""
        return self._process.pid if self._process is not None else None

    @property
    def monitor_url(self) -> str:
        return f"http://{_bracketed(self.host)}:{self.ports.monitor_port}"

    def _write_config(self) -> None:
        self.config_file.write_text(
            server_config(self.pki_dir, self.ports, self.work_dir / "jetstream", self.partitions, self.node)
        )
        self.config_file.chmod(0o600)

    def reload(self) -> None:
        """Take the sites added to the PKI directory since the start: the configuration is
        written again and the server reloads it (SIGHUP) without dropping a connection."""
        self._write_config()
        if self._process is not None:
            self._process.send_signal(signal.SIGHUP)

    def start(self) -> None:
        """Start it (again) and wait until it says it is ready (after JetStream is up): its
        log, not its monitoring port, which may be in another namespace."""
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                self.wrap([self.binary, "-c", str(self.config_file)]), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready(offset):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self._process.returncode}; its log {self.log_file} ends:\n"
                    + self._log_tail(offset)
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"nats-server not ready within {READY_TIMEOUT_S:g} s; its log {self.log_file} ends:\n"
                    + self._log_tail(offset)
                )
            time.sleep(0.05)

    def _log_tail(self, offset: int, lines: int = 5) -> str:
        """The last lines this start wrote to the log: why it exited, in the error itself
        (a test's temporary directory is gone when its failure is read)."""
        with open(self.log_file, "rb") as log:
            log.seek(offset)
            return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])

    def _ready(self, offset: int) -> bool:
        with open(self.log_file, "rb") as log:
            log.seek(offset)
            return READY_LINE in log.read()

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut: no shutdown, no flush beyond what was synced."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsCluster:
    """`size` nats-servers on `host`'s free ports, a JetStream cluster over TLS routes: the
    PKI directory gets the cluster's nodes (`bus_setup.init(nodes=...)`), each node its
    store under `work_dir/NODE`. Ready once its JetStream meta group has a leader."""

    def __init__(
        self, pki_dir: str | Path, work_dir: str | Path, size: int = 3, host: str = "127.0.0.1", **options
    ) -> None:
        """`options`: NatsServer's (partitions)."""
        nodes = tuple(
            ClusterNode(f"n{i}", host, ServerPorts(host, free_port(host), host, free_port(host)), free_port(host))
            for i in range(1, size + 1)
        )
        self.pki_dir = bus_setup.init(pki_dir, nodes=nodes)
        self.nodes = nodes
        self.servers: list[NatsServer] = []
        try:
            for node in nodes:
                self.servers.append(NatsServer(pki_dir, Path(work_dir) / node.name, host, node=node.name, **options))
            self.wait_for_leader()
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(server.url for server in self.servers)

    def jsz(self, index: int) -> dict:
        """A running node's JetStream monitoring page (`/jsz`)."""
        with urllib.request.urlopen(self.servers[index].monitor_url + "/jsz", timeout=5) as answer:
            return json.load(answer)

    def wait_for_leader(self, timeout: float = READY_TIMEOUT_S) -> str:
        """The meta leader's name, once every running node knows one."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = set()
            for i, server in enumerate(self.servers):
                if server.pid is not None:
                    try:
                        leaders.add(self.jsz(i).get("meta_cluster", {}).get("leader") or "")
                    except OSError:
                        leaders.add("")
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no JetStream meta leader in the cluster within {timeout:g} s: {leaders}")
            time.sleep(0.05)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> NatsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
