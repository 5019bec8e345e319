"""Per-slice queues on every link end: HTB with one class per slice, keyed on DSCP.

Layout on each veth (egress, so a link has one tree per direction):

    1:   htb root, unclassified traffic goes to the DSCP-0 slice's class
    1:1  the link's rate (the emulated line speed)
    1:1X one class per slice (X = 0x10 + slice ID): rate = its share, ceil = the link,
         so an idle slice's bandwidth is borrowed but a busy slice keeps its share.
    X:   a FIFO under each slice class (its length bounds the queueing delay)

u32 filters match the DSCP in the IPv6 traffic-class byte. Faults change these numbers
(congest cuts the link rate and bounds the queues, slice-starve cuts one class): each fault
made or healed builds the tree of every end it shapes again, with the numbers computed from
the faults active then. A new tree, not `tc class change`: HTB keeps a class's token debt
across a change of rate, and a class that ran one up at 8 kbit/s stays throttled after its
rate comes back, its FIFO full and dropping, for as long as the debt: one offloaded TCP
packet of 64 kB is a minute of it at 8 kbit/s (13 s were left after a 15 s starvation that an
agent's bus connection crossed). The packets queued at that end are dropped with the old
tree: on a healthy link none or a few.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.topology import LabTopology, Link, Slice

DEFAULT_FIFO_PACKETS = 1000  # the veth's own txqueuelen
LOAD_FRAME_BYTES = 1250  # an iperf3 `-l 1200` datagram with its UDP, IPv6 and Ethernet headers
QUANTUM = 1514  # one full frame per round; keeps HTB quiet about odd quanta at any rate


@dataclass(frozen=True, slots=True)
class EndSettings:
    """How one link end (one direction) is shaped right now."""

    rate_kbit: int
    queue_ms: float | None = None  # None: the default FIFO; a number: a byte FIFO that long
    starved: tuple[tuple[str, int], ...] = ()  # (slice name, kbit)

    def starved_rate(self, slice_name: str) -> int | None:
        return dict(self.starved).get(slice_name)


def class_minor(slice_: Slice) -> int:
    return 0x10 + slice_.slice_id


def class_id(slice_: Slice) -> str:
    return f"1:{class_minor(slice_):x}"


def base_settings(link: Link) -> EndSettings:
    return EndSettings(rate_kbit=int(link.bandwidth_mbit * 1000))


def _slice_rates(settings: EndSettings, slice_: Slice) -> tuple[int, int]:
    starved = settings.starved_rate(slice_.name)
    if starved is not None:
        return starved, starved
    return max(8, int(settings.rate_kbit * slice_.share / 100)), settings.rate_kbit


def _leaf(settings: EndSettings, device: str, slice_: Slice) -> str:
    minor = class_minor(slice_)
    if settings.queue_ms is None:
        fifo = f"pfifo limit {DEFAULT_FIFO_PACKETS}"
    else:
        # Packets of the congest load (1200-byte UDP, ~1250 bytes on the wire) that drain in
        # queue_ms at the cut rate: a full queue adds about queue_ms. A packet limit, not a
        # byte limit, so that small probes are dropped as often as the load when it is full.
        limit = max(2, round(settings.rate_kbit * 1000 / 8 * settings.queue_ms / 1000 / LOAD_FRAME_BYTES))
        fifo = f"pfifo limit {limit}"
    return f"qdisc add dev {device} parent 1:{minor:x} handle {minor:x}: {fifo}"


def setup_lines(topology: LabTopology, link: Link, site: str, settings: EndSettings | None = None) -> list[str]:
    """tc batch lines that build the tree on `site`'s end of `link`, shaped as `settings`
    (default: the link's own numbers)."""
    device = link.interface(site)
    settings = settings or base_settings(link)
    default = class_minor(topology.default_slice)
    lines = [
        f"qdisc add dev {device} root handle 1: htb default {default:x}",
        f"class add dev {device} parent 1: classid 1:1 htb rate {settings.rate_kbit}kbit ceil {settings.rate_kbit}kbit",
    ]
    for slice_ in topology.slices:
        rate, ceil = _slice_rates(settings, slice_)
        lines.append(
            f"class add dev {device} parent 1:1 classid {class_id(slice_)} htb"
            f" rate {rate}kbit ceil {ceil}kbit quantum {QUANTUM}"
        )
        lines.append(_leaf(settings, device, slice_))
    for slice_ in topology.slices:
        if slice_.dscp == 0:
            continue  # the default class catches it
        lines.append(
            f"filter add dev {device} parent 1: protocol ipv6 prio 1 u32"
            f" match ip6 priority 0x{slice_.tos:02x} 0xfc flowid {class_id(slice_)}"
        )
    return lines


def rebuild_lines(topology: LabTopology, link: Link, site: str, settings: EndSettings) -> list[str]:
    """tc batch lines that replace the tree on `site`'s end of `link` by one shaped as
    `settings` (why a new tree: the module's docstring)."""
    return [f"qdisc del dev {link.interface(site)} root", *setup_lines(topology, link, site, settings)]
