"""Which exporters the flow receiver accepts: an allow-list of IP prefixes.

Flow exports come over UDP with nothing to authenticate them, so the source address is all
there is to go on. An operator who lists the prefixes of the routers that export makes
every datagram from elsewhere refused before any of it is decoded or remembered. No list
accepts every address (the receiver's other bounds still hold). IPv4-mapped IPv6 sources
(::ffff:192.0.2.1) are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ExporterAllowList:
    __slots__ = ("_networks",)

    def __init__(self, prefixes: Iterable[str] | None) -> None:
        """`prefixes`: "2001:db8:1::/48", "192.0.2.0/24", or a single address; None: every
        exporter. ValueError names a prefix that is not one (host bits set included)."""
        self._networks: tuple[Network, ...] | None = None
        if prefixes is not None:
            networks = []
            for prefix in prefixes:
                try:
                    networks.append(ipaddress.ip_network(prefix.strip()))
                except ValueError as exc:
                    raise ValueError(f"exporter prefix {prefix!r}: {exc}") from None
            self._networks = tuple(networks)

    @property
    def prefixes(self) -> tuple[str, ...] | None:
        return None if self._networks is None else tuple(str(n) for n in self._networks)

    def allows(self, address: str) -> bool:
        """True when `address` (as recvfrom gives it, a zone index allowed) is on the list."""
        if self._networks is None:
            return True
        try:
            parsed = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        return any(parsed in network for network in self._networks)
