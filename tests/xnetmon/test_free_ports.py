import socket

import pytest

from xnetmon import free_ports
from xnetmon.free_ports import free_port


def ephemeral_first() -> int:
    return int(free_ports.EPHEMERAL_RANGE.read_text().split()[0])


def test_a_process_never_gets_the_same_port_twice():
    """Binding port 0 and closing repeats a port within a few hundred asks; this must not."""
    ports = [free_port("::1") for _ in range(2_000)] + [free_port("127.0.0.1", socket.SOCK_DGRAM) for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_ports_come_from_below_the_ephemeral_range_so_no_outgoing_connection_takes_one():
    first = ephemeral_first()
    assert first - free_ports.LOWEST >= 1_000, "this machine's ephemeral range leaves room below it"
    ports = [free_port("127.0.0.1") for _ in range(200)]
    assert all(free_ports.LOWEST <= port < first for port in ports)


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_a_port_someone_holds_is_passed_over(monkeypatch, kind):
    low, high = free_ports._walk_range()
    with socket.socket(socket.AF_INET6, kind) as held:
        taken = next(p for p in range(low, high) if free_ports._bindable(socket.AF_INET6, "::1", p, kind))
        held.bind(("::1", taken))
        monkeypatch.setattr(free_ports, "_next", taken)  # the walk's next port is the held one
        port = free_port("::1", kind)
        assert port != taken
        assert free_ports._bindable(socket.AF_INET6, "::1", port, kind)


def test_a_machine_whose_ephemeral_range_starts_low_gets_ports_from_the_whole_range(tmp_path, monkeypatch):
    proc_file = tmp_path / "ip_local_port_range"
    proc_file.write_text("1024\t65535\n")
    monkeypatch.setattr(free_ports, "EPHEMERAL_RANGE", proc_file)
    assert free_ports._walk_range() == (1_024, 65_536)
    proc_file.write_text("32768\t60999\n")
    assert free_ports._walk_range() == (free_ports.LOWEST, 32_768)
