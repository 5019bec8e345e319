"""analyzer.api.console_files: the console's built files at /ui/ with their content types, the
read token applied to them as to every GET, and a clear 503 where nothing was built."""

from __future__ import annotations

from fastapi import FastAPI

from analyzer.api.console_files import CONSOLE_DIR, mount_console
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


def test_with_a_read_token_the_console_needs_it_too():
    api = Api(read_token="reader")
    assert api.get("/ui/").status_code == 401
    assert api.get("/ui/", headers={"Authorization": "Bearer reader"}).status_code == 200


def test_without_a_build_the_console_path_says_how_to_make_one(tmp_path):
    app = FastAPI()
    mount_console(app, tmp_path)
    answer = call(app, "GET", "/ui/")
    assert answer.status_code == 503 and "scripts/setup.sh" in answer.json()["detail"]
