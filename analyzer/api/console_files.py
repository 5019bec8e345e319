"""The operations console at /ui/: the single-page app built from console/ (Vite), served as
static files by the analyzer itself, so no other server runs and no page fetches anything
from outside. The read token, when configured, does not apply to these files
(`is_console_file`): they hold no data, and the page asks for the token and sends it on its
own reads of the API (analyzer.api.auth.ReadTokenGate)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console" / "dist"  # the committed build
CONSOLE_PATH = "/ui"


def is_console_file(path: str) -> bool:
    """Whether a request for `path` is routed to the console's files (or its redirect), and
    to nothing else: the router sends every path under /ui/ to the mount below."""
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def mount_console(app: FastAPI, directory: Path = CONSOLE_DIR) -> None:
    """/ui/ serves `directory` (index.html at /ui/); /ui redirects there. Without a build,
    /ui/ answers 503 saying how to make one, rather than a bare 404."""

    @app.get(CONSOLE_PATH, include_in_schema=False)
    def to_console() -> RedirectResponse:
        return RedirectResponse(CONSOLE_PATH + "/", status_code=308)

    if (directory / "index.html").is_file():
        app.mount(CONSOLE_PATH, StaticFiles(directory=directory, html=True), name="console")
    else:

        @app.get(CONSOLE_PATH + "/{rest:path}", include_in_schema=False)
        def no_console(rest: str) -> JSONResponse:
            return JSONResponse(
                {"detail": f"the console is not built ({directory} has no index.html): run scripts/setup.sh"}, 503
            )
