"""The HTTP bounds refuse values that would serve nobody; a body's time grows with what it
brought."""

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
    with pytest.raises(ValueError, match="positive"):
        HttpLimits(body_grace_s=0)
    with pytest.raises(ValueError, match="too small"):
        HttpLimits(min_body_rate=0)


def test_a_body_has_its_grace_plus_a_second_per_min_rate_bytes_it_brought():
    limits = HttpLimits(body_grace_s=10, min_body_rate=500)
    assert limits.body_time_s(0) == 10
    assert limits.body_time_s(5000) == 20  # a 5000-byte body at 500 bytes/s, after the grace
