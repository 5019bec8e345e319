"""The Prober protocol (collector.probes.base) is what the scheduler asks of a probe kind, and it
is checkable at run time: the real STAMP and ICMP probers meet it, and a class missing any one
of its members does not."""

from __future__ import annotations

import pytest

from collector.probes.base import Prober, ProberContext
from collector.probes.icmp import IcmpProber
from collector.probes.stamp import StampProber
from collector.system.clock import shared_host_clock


class EveryMember:
    """Has each member of the protocol, and nothing else."""

    kind = "fake"
    title = "fake"
    minimum_size = 0
    uses_port = False
    send_errors = 0
    receive_errors = 0

    def __init__(self, context: ProberContext) -> None:
        self.context = context

    def add(self, spec, on_result): ...

    def attach(self, loop) -> None: ...

    def detach(self, loop) -> None: ...

    def expire(self, now_ns: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


MEMBERS = (
    "kind",
    "title",
    "minimum_size",
    "uses_port",
    "send_errors",
    "receive_errors",
    "add",
    "attach",
    "detach",
    "expire",
    "flush",
    "close",
)


@pytest.mark.parametrize("prober_type", [StampProber, IcmpProber], ids=lambda t: t.__name__)
def test_the_real_probers_are_probers(prober_type):
    prober = prober_type(ProberContext(None, shared_host_clock()))
    try:
        assert isinstance(prober, Prober)
    finally:
        prober.close()


def test_a_class_with_every_member_is_a_prober():
    assert isinstance(EveryMember(ProberContext(None, shared_host_clock())), Prober)


@pytest.mark.parametrize("missing", MEMBERS)
def test_a_class_missing_a_member_is_not_a_prober(missing):
    lacking = type(f"Without_{missing}", (), {k: v for k, v in vars(EveryMember).items() if k != missing})
    assert missing in vars(EveryMember) and not hasattr(lacking, missing)
    assert not isinstance(lacking(ProberContext(None, shared_host_clock())), Prober)
