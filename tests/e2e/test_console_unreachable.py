"""The console when its analyzer goes away, in headless Chromium: a clear banner says the
analyzer is unreachable within a few polls, the last map stays drawn, and no JavaScript error
is thrown (the browser's own 'failed to load' lines for the refused polls are expected)."""

from __future__ import annotations

from playwright.sync_api import sync_playwright

from analyzer.service import AnalyzerService
from analyzer.sla.verdicts import default_policies
from lab.topology import load
from tests.support import DEADLINE_S
from xnetmon.lab_sites import declared_topology

CHROMIUM = "/usr/bin/chromium"
SMALL = load("small")


def test_an_unreachable_analyzer_is_said_clearly_and_the_last_map_stays():
    service = AnalyzerService(
        default_policies(), ("::1", 0), api_options={"declared_topology": declared_topology(SMALL)}
    )
    service.serve_in_thread()
    url = f"http://[::1]:{service.socket.getsockname()[1]}"
    stopped = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            thrown: list[str] = []
            page.on("pageerror", lambda error: thrown.append(str(error)))
            page.goto(f"{url}/ui/?poll=500")
            page.wait_for_function(
                "window.__xnetmon && window.__xnetmon.timings.opened !== null", timeout=DEADLINE_S * 1000
            )
            assert page.locator("#banner").is_hidden()
            service.stop()
            stopped = True
            page.wait_for_function("!document.querySelector('#banner').hidden", timeout=DEADLINE_S * 1000, polling=100)
            assert "analyzer is unreachable" in page.locator("#banner").inner_text()
            assert page.evaluate("window.__xnetmon.cy.nodes().length") == len(SMALL.sites)
            assert thrown == []
        finally:
            browser.close()
            if not stopped:
                service.stop()
