"""Ping statistics and hop lists from real iputils ping, over loopback: a stand-in lab runs
every site's commands in this namespace and answers for ::1, so no lab has to be up."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from lab.measure import PingStats, hop, hops, ping
from lab.topology import load

pytestmark = pytest.mark.tool("ping")


class LoopbackLab:
    """What lab.measure asks of a Lab, with every site being this host's loopback."""

    topology = load("tiny")

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def address(self, site: str) -> str:
        return "::1"

    def site_of(self, address: str) -> str | None:
        return "here" if address == "::1" else None

    def exec(self, site: str, argv: Sequence[str], *, timeout: float = 60) -> subprocess.CompletedProcess:
        self.commands.append(list(argv))
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def test_statistics_of_replies():
    stats = PingStats(sent=4, rtts_ms=(0.3, 0.1, 0.2))
    assert (stats.received, stats.loss, stats.median_ms, stats.min_ms) == (3, 0.25, 0.2, 0.1)
    silent = PingStats(sent=0, rtts_ms=())
    assert (silent.loss, silent.median_ms, silent.min_ms) == (1.0, float("inf"), float("inf"))


def test_a_site_answers_every_ping_and_a_slice_sets_the_traffic_class():
    lab = LoopbackLab()
    stats = ping(lab, "r1", "r3", count=3, interval=0.01, slice="video")
    assert (stats.sent, stats.received, stats.loss) == (3, 3, 0.0)
    assert 0 < stats.min_ms <= stats.median_ms < 100
    [argv] = lab.commands
    assert argv[argv.index("-Q") + 1] == str(34 << 2) and argv[-1] == "::1"


def test_an_address_nobody_answers_is_all_loss():
    stats = ping(LoopbackLab(), "r1", "100::1", count=2, interval=0.01, wait=0.2)  # RFC 6666 discard prefix
    assert (stats.received, stats.loss) == (0, 1.0)


def test_the_first_hop_that_answers_and_the_hop_list_as_sites():
    lab = LoopbackLab()
    assert hop(lab, "r1", "::1", hop_limit=1) == ("::1", True)
    assert hops(lab, "r1", "r3", max_hops=3) == ["here"]  # reached at the first hop
