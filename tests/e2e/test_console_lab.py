"""The operations console in a real browser (Debian's Chromium, headless, driven by Playwright)
against the lab's all-in-one deployment: the map shows every lab site and link; a loss fault on
a county's uplink turns that link to the loss state in the video slice with the root-cause hint
drawn on it; clicking the hint shows its evidence in `xnetmon why`'s words; healing brings the
link back; no JavaScript error reaches the console; a probe run from the console's form asks for the
token once and never shows it back. Screenshots of the map, the slice and the
hint's evidence go to build/console-screenshots/."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.support import DEADLINE_S, wait_until
from xnetmon.allinone import LAB_SITES, lab_deployment

pytestmark = [pytest.mark.root, pytest.mark.lab]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"
FAULTY = ("city1a", "cnty1a")  # cnty1a's only uplink: every path of cnty1a crosses it
WAIT_MS = DEADLINE_S * 1000


def link_id(a: str, b: str) -> str:
    return "~".join(sorted((a, b)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("console")


@pytest.fixture(scope="module")
def deployment(small_lab, workdir):
    with lab_deployment(small_lab, workdir, api_port=0) as deployed:
        url = deployed.api_url

        def every_agent_ships_and_video_is_ok() -> bool:
            agents = httpx.get(f"{url}/healthz", timeout=5).json()["agents"]
            slices = {s["name"]: s["status"] for s in httpx.get(f"{url}/slices", timeout=5).json()}
            return len(agents) == len(LAB_SITES) and slices.get("video") == "ok"

        wait_until(every_agent_ships_and_video_is_ok, interval=1, what="every agent shipping, video ok")
        yield deployed


@pytest.fixture
def page(deployment):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        opened = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors: list[str] = []
        opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        opened.on("pageerror", lambda error: errors.append(str(error)))
        opened.errors = errors  # type: ignore[attr-defined]
        requested: list[str] = []
        opened.on("request", lambda request: requested.append(request.url))
        opened.requested = requested  # type: ignore[attr-defined]
        opened.goto(f"{deployment.api_url}/ui/?poll=1000&slice=video")
        yield opened
        browser.close()


def part_shows(element_id: str, state: str, hinted: bool = False) -> str:
    """A page expression: the part's row in the list says `state` (and a hint, ⚠, on it)."""
    row = f"document.querySelector('button.part[data-id=\"{element_id}\"]')"
    hint = ' && b.textContent.includes("\u26a0")' if hinted else ""
    return f'(() => {{ const b = {row}; return Boolean(b) && b.dataset.state === "{state}"{hint}; }})()'


def test_the_map_follows_a_loss_fault_and_its_hint_and_shows_the_evidence(deployment, lab, page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sites = sorted(site.name for site in lab.topology.sites)
    links = sorted(link_id(*link.ends) for link in lab.topology.links)
    drawn = "window.__xnetmon && window.__xnetmon.cy.nodes().length >= %d && window.__xnetmon.cy.edges().length >= %d"
    page.wait_for_function(drawn % (len(sites), len(links)), timeout=WAIT_MS)
    assert sorted(page.evaluate("window.__xnetmon.cy.nodes().map(n => n.id())")) == sites
    assert sorted(page.evaluate("window.__xnetmon.cy.edges().map(e => e.id())")) == links
    # Nothing is fetched from anywhere but the analyzer (data: URLs stay in the page).
    elsewhere = [u for u in page.requested if not u.startswith((deployment.api_url, "data:"))]  # type: ignore[attr-defined]
    assert elsewhere == []
    faulty = link_id(*FAULTY)
    page.wait_for_function(part_shows(faulty, "ok"), timeout=WAIT_MS)
    page.screenshot(path=str(SCREENSHOTS / "map.png"), full_page=True)

    fault = lab.fault_loss("city1a-cnty1a", 0.10)
    # The hint is drawn on the link, also when the engine cannot tell the link from its two
    # ends (it named the two sites on a loaded machine).
    page.wait_for_function(part_shows(faulty, "loss", hinted=True), timeout=WAIT_MS, polling=200)
    page.screenshot(path=str(SCREENSHOTS / "map-loss.png"), full_page=True)
    # The analyzer's own history (a point every 10 s here) charts the slice.
    page.wait_for_function("Number(document.querySelector('#slice-chart')?.dataset.points) >= 2", timeout=WAIT_MS)
    page.locator("#slice-view").screenshot(path=str(SCREENSHOTS / "slice.png"))

    # By keyboard: the link's row, then the hint.
    page.locator(f'button.part[data-id="{faulty}"]').focus()
    page.keyboard.press("Enter")
    page.locator("#hint-list button.hint").first.focus()
    page.keyboard.press("Enter")
    evidence = page.locator("#hint-evidence")
    evidence.wait_for(timeout=WAIT_MS)
    shown = page.evaluate(
        """() => ({
            likely: document.querySelector('#hint-evidence .most-likely').textContent,
            evidence: [...document.querySelectorAll('#hint-evidence li.evidence')].map(li => li.textContent),
        })"""
    )
    assert shown["likely"].startswith("Most likely: ") and "cnty1a" in shown["likely"], shown
    assert shown["evidence"] and all(line.startswith("Evidence: ") for line in shown["evidence"]), shown
    page.screenshot(path=str(SCREENSHOTS / "hint-evidence.png"), full_page=True)

    lab.heal(fault)
    page.wait_for_function(part_shows(faulty, "ok"), timeout=WAIT_MS, polling=200)
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_probe_from_the_console_asks_the_token_once_and_never_shows_it(deployment, workdir, page):
    core = next(
        p["target_address"]
        for p in httpx.get(f"{deployment.api_url}/paths", params={"src": "cnty1a"}, timeout=5).json()["paths"]
        if p["path"]["target"] == "core"
    )
    token = (workdir / "token").read_text()
    form = page.locator("#probe-form")
    form.locator("[name=agent]").fill("cnty1a")
    form.locator("[name=target]").fill(core)
    form.locator("[name=slice]").fill("video")
    form.locator("[name=count]").fill("5")
    form.locator("[name=token]").fill(token)
    form.locator("button[type=submit]").click()
    result = page.locator("#probe-result")
    page.wait_for_function(
        "!['', '\u2026'].includes(document.querySelector('#probe-result').textContent)", timeout=WAIT_MS
    )
    # The probe's summary as `xnetmon probe stamp` prints it, not an error
    summary = [f"--- {core} STAMP statistics ---", "5 sent, "]
    assert all(line in result.inner_text() for line in summary), result.inner_text()
    assert form.locator(".token-row").is_hidden()
    assert token not in page.content()
    form.locator("button[type=submit]").click()  # again, without asking for the token
    page.wait_for_function(
        "!['', '\u2026'].includes(document.querySelector('#probe-result').textContent)", timeout=WAIT_MS
    )
    assert result.inner_text().startswith(summary[0]), result.inner_text()
    assert page.errors == []  # type: ignore[attr-defined]
