"""`xnetmon analyzer`: where it listens, what a token file must hold, and what it says when
it starts and stops. (tests/xnetmon/test_analyzer_command.py serves shipments through it.)"""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest

from tests.support import REPO, XNETMON, stop_process
from xnetmon.commands.analyzer import DEFAULT_LISTEN, read_site_tokens, read_token, writes_words
from xnetmon.commands.common import listen_address
from xnetmon.errors import UsageError


def parse_listen(value: str) -> tuple[str, int]:
    """--listen as the command reads it."""
    return listen_address(value, "--listen", DEFAULT_LISTEN)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("[::1]:9863", ("::1", 9863)),
        ("[::]:80", ("::", 80)),
        (":9863", ("::", 9863)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[fe80::1%lo]:1", ("fe80::1%lo", 1)),
    ],
)
def test_listen_addresses_and_every_address_when_none_is_given(value, expected):
    assert parse_listen(value) == expected


def test_a_port_beyond_tcp_is_refused():
    with pytest.raises(UsageError, match="--listen: 70000 is not a TCP port"):
        parse_listen("[::1]:70000")


def test_a_token_file_holds_one_token_without_spaces(tmp_path):
    (tmp_path / "good").write_text("  s3cr3t-t0ken\n")
    assert read_token(str(tmp_path / "good")) == "s3cr3t-t0ken"
    for name, content in (("two", "one two\n"), ("empty", "\n")):
        (tmp_path / name).write_text(content)
        with pytest.raises(UsageError, match="must hold one token without spaces"):
            read_token(str(tmp_path / name))
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="is not text"):
        read_token(str(tmp_path / "binary"))


def test_it_says_where_it_serves_and_what_it_took_when_stopped(tmp_path):
    (tmp_path / "token").write_text("t0ken\n")
    proc = subprocess.Popen(
        [
            *XNETMON,
            "analyzer",
            "--listen",
            "[::1]:0",
            "--token-file",
            str(tmp_path / "token"),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        banner = proc.stdout.readline()
        url = re.search(r"http://\[::1\]:\d+", banner).group(0)
        assert httpx.get(f"{url}/healthz", timeout=10).json()["writes"] is True  # serving
    finally:
        stop_process(proc, timeout=15)
    assert re.match(
        r"xnetmon analyzer: API on http://\[::1\]:\d+, "
        r"slices best-effort, data, egov, video; writes need the shared token \(any site may ship any path: "
        r"--site-tokens binds them\); state in ",
        banner,
    ), banner
    assert proc.stdout.read() == "xnetmon analyzer: stopped; 0 windows taken, 0 duplicates ignored\n"
    assert (tmp_path / "state" / "analyzer-store.json").exists()  # the snapshot at exit


def test_site_tokens_that_cannot_be_used_are_a_usage_error_naming_the_line(tmp_path):
    (tmp_path / "tokens").write_text("cnty1a short\n")
    with pytest.raises(UsageError, match=r"--site-tokens: .*tokens:1: the token of site 'cnty1a' must be 16\+"):
        read_site_tokens(str(tmp_path / "tokens"))


def test_the_banner_says_who_may_write():
    sites = {"cnty1a": "x" * 16}
    assert writes_words(None, sites) == "shipments need each site's own token (1 sites), no probes (no --token-file)"
    assert writes_words("t", sites).endswith("probes need the --token-file token")
    assert writes_words(None, None) == "read-only (no --token-file or --site-tokens)"
