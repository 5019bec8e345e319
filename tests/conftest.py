"""Test-suite policy shared by every test.

Tests that need root or a Debian tool carry `@pytest.mark.root` / `@pytest.mark.tool("tshark")`
and skip with a reason on a laptop. CI sets XNETMON_FORBID_SKIPS=1 (see .ci/run): there a
single skipped test fails the run, because CI has root and installs every tool.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from lab.testing import heal_everything, running_lab

FORBID_SKIPS = os.environ.get("XNETMON_FORBID_SKIPS") == "1"
_skipped: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # A run started in the background (`pytest &` in a script) inherits SIGINT ignored, and
    # so would every process it starts: the Ctrl-C tests' commands would never see theirs.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        if item.get_closest_marker("root") and not is_root:
            item.add_marker(pytest.mark.skip(reason="needs root (network namespaces / raw sockets)"))
        for marker in item.iter_markers("tool"):
            for tool in marker.args:
                if shutil.which(tool) is None:
                    item.add_marker(pytest.mark.skip(reason=f"needs {tool} on PATH (make test installs it)"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if FORBID_SKIPS and _skipped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"XNETMON_FORBID_SKIPS: {len(_skipped)} test(s) skipped, which CI treats as failure:",
                red=True,
            )
            for nodeid in _skipped:
                reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def small_lab():
    """The `small` lab, brought up once per test run and torn down at its end."""
    with running_lab("small") as lab:
        yield lab


@pytest.fixture
def lab(small_lab):
    """The `small` lab with no active fault; faults a test leaves are healed after it."""
    heal_everything(small_lab)
    yield small_lab
    heal_everything(small_lab)


@pytest.fixture(autouse=True)
def own_sigterm():
    """Commands run in-process (cli.main) install their SIGTERM handler; the test run keeps its own."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
