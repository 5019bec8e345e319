"""The HTTP bounds refuse values that would serve nobody."""

from __future__ import annotations

import pytest

from collector.system.http_limits import DEFAULT_HTTP_LIMITS, HttpLimits


def test_defaults_are_sane_and_nonsense_is_refused():
    assert DEFAULT_HTTP_LIMITS.keep_alive_s < DEFAULT_HTTP_LIMITS.header_timeout_s
    with pytest.raises(ValueError, match="positive"):
        HttpLimits(header_timeout_s=0)
    with pytest.raises(ValueError, match="too small"):
        HttpLimits(max_connections=0)
    with pytest.raises(ValueError, match="too small"):
        HttpLimits(max_header_bytes=100)
