"""The one listen-address parser: every form operators write, and what a mistake says."""

from __future__ import annotations

import pytest

from collector.system.listen_address import parse_listen


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("[::1]:9863", ("::1", 9863)),
        ("[2001:db8::7]:0", ("2001:db8::7", 0)),
        ("127.0.0.1:9862", ("127.0.0.1", 9862)),
        ("[127.0.0.1]:9862", ("127.0.0.1", 9862)),
        ("[::]:4739", ("::", 4739)),
        (":9863", ("::", 9863)),  # every address
        ("[]:9863", ("::", 9863)),
        ("[::1]:65535", ("::1", 65535)),
    ],
)
def test_every_form_gives_the_address_and_port(value, parsed):
    assert parse_listen(value, "[::1]:9863") == parsed


@pytest.mark.parametrize(
    "value, message",
    [
        ("::1:9862", 'expected "[ADDRESS]:PORT" such as "[::1]:9862", got \'::1:9862\''),
        ("localhost:9862", 'expected "[ADDRESS]:PORT" such as "[::1]:9862", got \'localhost:9862\''),
        ("[::1]", 'expected "[ADDRESS]:PORT" such as "[::1]:9862", got \'[::1]\''),
        ("[::1]:123456", 'expected "[ADDRESS]:PORT" such as "[::1]:9862", got \'[::1]:123456\''),
        ("[fe80::zz]:80", "'fe80::zz' is not an IP address"),
        ("1.2.3:80", "'1.2.3' is not an IP address"),
        ("[::1]:70000", "70000 is not a TCP port"),
    ],
)
def test_a_mistake_says_what_was_expected(value, message):
    with pytest.raises(ValueError) as caught:
        parse_listen(value, "[::1]:9862")
    assert str(caught.value) == message
