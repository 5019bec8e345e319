"""The console of an analyzer with a read token (--read-token-file), in headless Chromium: the
page itself loads without the token, says the analyzer needs it and asks for it; a wrong one
is said to be wrong and asked again; the right one draws the map, is never written into the
page, and is kept for the tab (a reload does not ask again). No JavaScript error is thrown
(the browser's own 'failed to load' lines for the refused reads are expected)."""

from __future__ import annotations

from playwright.sync_api import sync_playwright

from analyzer.service import AnalyzerService
from analyzer.sla.verdicts import default_policies
from lab.topology import load
from tests.support import DEADLINE_S
from xnetmon.lab_sites import declared_topology

CHROMIUM = "/usr/bin/chromium"
SMALL = load("small")
READ_TOKEN = "reader-0123456789abcdef"
WAIT_MS = DEADLINE_S * 1000


def test_the_console_asks_for_the_read_token_once_and_says_when_it_is_wrong():
    service = AnalyzerService(
        default_policies(),
        ("::1", 0),
        api_options={"declared_topology": declared_topology(SMALL), "read_token": READ_TOKEN},
    )
    service.serve_in_thread()
    url = f"http://[::1]:{service.socket.getsockname()[1]}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                thrown: list[str] = []
                page.on("pageerror", lambda error: thrown.append(str(error)))
                page.goto(f"{url}/ui/?poll=500")
                form = page.locator("#read-token-form")
                form.wait_for(state="visible", timeout=WAIT_MS)
                assert "needs its read token" in page.locator("#banner").inner_text()

                form.locator("[name=read-token]").fill("not-the-token")
                form.locator("button[type=submit]").click()
                page.wait_for_function(
                    "document.querySelector('#banner').textContent.includes('was refused')", timeout=WAIT_MS
                )
                assert form.is_visible()
                assert page.evaluate("sessionStorage.getItem('xnetmon-read-token')") is None

                form.locator("[name=read-token]").fill(READ_TOKEN)
                form.locator("button[type=submit]").click()
                page.wait_for_function("window.__xnetmon && window.__xnetmon.timings.opened !== null", timeout=WAIT_MS)
                assert page.evaluate("window.__xnetmon.cy.nodes().length") == len(SMALL.sites)
                page.wait_for_function("document.querySelector('#banner').hidden", timeout=WAIT_MS)
                assert form.is_hidden()
                assert READ_TOKEN not in page.content()
                assert form.locator("[name=read-token]").input_value() == ""

                page.reload()  # the same tab: the token is kept, not asked again
                page.wait_for_function("window.__xnetmon && window.__xnetmon.timings.opened !== null", timeout=WAIT_MS)
                assert page.locator("#read-token-form").is_hidden()
                assert thrown == []
            finally:
                browser.close()
    finally:
        service.stop()
