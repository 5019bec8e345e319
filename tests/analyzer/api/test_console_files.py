"""analyzer.api.console_files: the console's built files at /ui/ with their content types, the
read token not asked for them (and for nothing else), and a clear 503 where nothing was built."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from analyzer.api.console_files import CONSOLE_DIR, is_console_file, mount_console
from tests.api_support import Api, call


def test_the_console_is_served_at_ui_with_its_assets_typed():
    api = Api()
    page = api.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<div id="app"' in page.text
    assets = sorted((CONSOLE_DIR / "assets").iterdir())
    types = {p.suffix: api.get(f"/ui/assets/{p.name}").headers["content-type"] for p in assets}
    assert types[".js"].startswith("text/javascript") and types[".css"].startswith("text/css")
    assert api.get("/ui").status_code == 308


def test_the_page_fetches_nothing_from_outside():
    for built in CONSOLE_DIR.rglob("*"):
        if built.suffix in (".html", ".css"):
            text = built.read_text()
            assert "http://" not in text and "https://" not in text.replace("https://www.w3.org", ""), built


def test_with_a_read_token_the_consoles_files_load_without_it_and_nothing_else_does():
    api = Api(read_token="reader")
    asset = next((CONSOLE_DIR / "assets").iterdir()).name
    for path in ("/ui/", "/ui/index.html", f"/ui/assets/{asset}"):
        assert api.get(path).status_code == 200, path
    assert api.request("HEAD", "/ui/").status_code == 200
    assert api.get("/ui").status_code == 308
    for path in ("/slices", "/map", "/healthz", "/uix", "/ui-data", "/paths?x=/ui/"):
        assert api.get(path).status_code == 401, path
    # A path under /ui/ goes to the console's files whatever it spells, never to the API
    # (sent as is: an HTTP client would resolve the dots before sending).
    for raw in ("/ui/../slices", "/ui/../../etc/passwd", "/ui/./../map"):
        assert status_of(api.app, raw) == 404, raw
    assert api.get("/slices", headers={"Authorization": "Bearer reader"}).status_code == 200


def status_of(app: FastAPI, path: str) -> int:
    """The status of a GET of `path` exactly as written, in-process."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
        "client": ("::1", 1), "server": ("::1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


@pytest.mark.parametrize(
    "path, console", [("/ui", True), ("/ui/", True), ("/ui/assets/a.js", True), ("/uix", False), ("/", False)]
)
def test_only_the_console_path_is_the_consoles(path, console):
    assert is_console_file(path) is console


def test_without_a_build_the_console_path_says_how_to_make_one(tmp_path):
    app = FastAPI()
    mount_console(app, tmp_path)
    answer = call(app, "GET", "/ui/")
    assert answer.status_code == 503 and "scripts/setup.sh" in answer.json()["detail"]
