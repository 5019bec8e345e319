"""The lab's address plan: one /48, carved with netaddr so that no address is typed by hand.

By default the /48 is cut into /52 blocks: block 0 holds the loopbacks (one /128 per site,
taken from its first /64), block 1 the links (one /64 each), block 2 the site host
networks (one /64 each). A topology may place the three blocks itself; they must then lie
inside the /48, not overlap and be large enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from netaddr import AddrFormatError, IPAddress, IPNetwork

# Only private (ULA) or documentation space: lab traffic must never be routable outside.
ALLOWED_SPACE = (IPNetwork("fc00::/7"), IPNetwork("2001:db8::/32"))
BLOCK_LENGTH = 52


class AddressPlanError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AddressPlan:
    prefix: IPNetwork
    loopbacks: IPNetwork
    links: IPNetwork
    hosts: IPNetwork

    @classmethod
    def build(
        cls,
        prefix: str,
        site_count: int,
        link_count: int,
        *,
        loopbacks: str | None = None,
        links: str | None = None,
        hosts: str | None = None,
    ) -> AddressPlan:
        whole = _network("addressing.prefix", prefix)
        if whole.prefixlen != 48:
            raise AddressPlanError(f"prefix {prefix} must be a /48 (got /{whole.prefixlen})")
        if not any(whole in space for space in ALLOWED_SPACE):
            raise AddressPlanError(f"prefix {prefix} is neither ULA (fc00::/7) nor documentation (2001:db8::/32)")
        default = list(whole.subnet(BLOCK_LENGTH, count=3))
        blocks = {
            "loopbacks": _network("addressing.loopbacks", loopbacks) if loopbacks else default[0],
            "links": _network("addressing.links", links) if links else default[1],
            "hosts": _network("addressing.hosts", hosts) if hosts else default[2],
        }
        need = {"loopbacks": (128, site_count), "links": (64, link_count), "hosts": (64, site_count)}
        for key, block in blocks.items():
            if block not in whole:
                raise AddressPlanError(f"{key} block {block} lies outside the lab prefix {whole}")
            if block.prefixlen > 64:
                raise AddressPlanError(f"{key} block {block} must be a /64 or shorter")
            length, count = need[key]
            capacity = 2 ** (length - block.prefixlen) - (1 if key == "loopbacks" else 0)
            if capacity < count:
                raise AddressPlanError(f"{key} block {block} has room for {capacity}, the topology needs {count}")
        names = list(blocks)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                x, y = blocks[first], blocks[second]
                if x in y or y in x:
                    raise AddressPlanError(f"{first} block {x} overlaps {second} block {y}")
        return cls(whole, blocks["loopbacks"], blocks["links"], blocks["hosts"])

    def loopback(self, site_index: int) -> IPAddress:
        # ::0 is the subnet-router anycast address, so site 0 gets ::1.
        return IPAddress(self.loopbacks.first + site_index + 1, 6)

    def host_prefix(self, site_index: int) -> IPNetwork:
        return _nth_64(self.hosts, site_index)

    def host_address(self, site_index: int) -> IPAddress:
        return IPAddress(self.host_prefix(site_index).first + 1, 6)

    def link_prefix(self, link_index: int) -> IPNetwork:
        return _nth_64(self.links, link_index)

    def link_address(self, link_index: int, end: int) -> IPAddress:
        """end 1 is the link's `a` site, end 2 its `b` site."""
        if end not in (1, 2):
            raise AddressPlanError("a link has two ends, numbered 1 (a) and 2 (b)")
        return IPAddress(self.link_prefix(link_index).first + end, 6)

    def contains(self, address: str) -> bool:
        return IPAddress(address) in self.prefix


def _nth_64(block: IPNetwork, index: int) -> IPNetwork:
    # With its version given, netaddr does not try IPv4 first: that try leaves reference
    # cycles (~9,000 objects each time the routes are computed) only the cyclic collector
    # frees, which made the soak's process look as if it grew.
    return IPNetwork((block.first + (index << 64), 64), version=6)


def _network(key: str, text: str) -> IPNetwork:
    try:
        network = IPNetwork(text)
    except (AddrFormatError, ValueError, TypeError):
        raise AddressPlanError(f"{key}: {text!r} is not an IPv6 prefix") from None
    if network.version != 6:
        raise AddressPlanError(f"{key}: {text} is not IPv6")
    if network.ip != network.network:
        raise AddressPlanError(f"{key}: {text} has host bits set (did you mean {network.cidr}?)")
    return network
