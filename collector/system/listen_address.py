"""Listen addresses as operators write them, one parser for every option and key that takes
one: "[ADDRESS]:PORT" (IPv6, or IPv4 in brackets), "A.B.C.D:PORT", and ":PORT" or "[]:PORT"
for every address ("::", which takes IPv4 too where the socket allows it). Names are not
resolved: a listen address is where this host answers, so it is an address of its own."""

from __future__ import annotations

import ipaddress
import re

_FORM = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<v4>[0-9.]*)):(?P<port>[0-9]{1,5})$")
EVERY_ADDRESS = "::"


def parse_listen(value: str, example: str) -> tuple[str, int]:
    """ "[::1]:9863", "[::]:9863", ":9863" or "127.0.0.1:9863" -> (address, port). Raises
    ValueError saying what was expected, with `example` (the caller's default) as a valid form."""
    match = _FORM.match(value)
    if match is None:
        raise ValueError(f'expected "[ADDRESS]:PORT" such as "{example}", got {value!r}')
    address = (match["v6"] if match["v6"] is not None else match["v4"]) or EVERY_ADDRESS
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"{port} is not a TCP port")
    return address, port
