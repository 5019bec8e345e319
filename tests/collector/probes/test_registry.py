"""The probe kinds' registry: one name per kind, and every prober has what the scheduler asks."""

from __future__ import annotations

from collector.probes.base import Prober, ProberContext
from collector.probes.registry import KINDS, PROBERS
from collector.system.clock import shared_host_clock


def test_the_kinds_are_stamp_icmp_and_trace_as_deployed_configs_and_metrics_name_them():
    assert KINDS == ("stamp", "icmp", "trace")
    assert {name: prober.kind for name, prober in PROBERS.items()} == {"stamp": "stamp", "icmp": "icmp"}


def test_every_prober_meets_the_protocol_without_opening_a_socket_before_its_first_target():
    context = ProberContext(None, shared_host_clock())
    for prober_type in PROBERS.values():
        prober = prober_type(context)
        try:
            assert isinstance(prober, Prober), prober_type
            assert (prober.send_errors, prober.receive_errors) == (0, 0)
            prober.expire(0)
            prober.flush()  # nothing outstanding, nothing to hand out
        finally:
            prober.close()
