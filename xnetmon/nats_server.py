"""nats-server with JetStream, started by this process on free ports: for the all-in-one
deployment and for tests. Its configuration comes from `xnetmon.bus_setup` (TLS with
client certificates, per-site permissions); `stop()` and `start()` again keep the ports
and the store, as a restarted server would.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from xnetmon.bus_setup import ServerPorts, server_config

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
    ) -> None:
        """`ports`: free ones on `host` unless given; `wrap` turns the command into the one
        to run (the all-in-one runs it inside the lab's core namespace); `partitions`: the
        sites' subjects mapped into that many partitions."""
        binary = shutil.which(NATS_SERVER) or shutil.which(NATS_SERVER, path="/usr/sbin:/usr/bin")
        if binary is None:
            raise FileNotFoundError("nats-server is not installed (Debian package nats-server)")
        self.binary = binary
        self.host = host
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.ports = ports or ServerPorts(host, _free_port(host), host, _free_port(host))
        self.wrap = wrap
        self.partitions = partitions
        self.pki_dir = Path(pki_dir)
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
            server_config(self.pki_dir, self.ports, self.work_dir / "jetstream", self.partitions)
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
                raise RuntimeError(f"nats-server exited with {self._process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server not ready within {READY_TIMEOUT_S:g} s; see {self.log_file}")
            time.sleep(0.05)

    def _ready(self, offset: int) -> bool:
        with open(self.log_file, "rb") as log:
            log.seek(offset)
            return READY_LINE in log.read()

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


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
