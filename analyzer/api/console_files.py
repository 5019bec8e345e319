"""The operations console at /ui/: the single-page app built from console/ (Vite), served as
static files by the analyzer itself, so no other server runs and no page fetches anything
from outside. The read token, when configured, applies to these GETs as to every other
(analyzer.api.auth.ReadTokenGate)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console" / "dist"  # the committed build


def mount_console(app: FastAPI, directory: Path = CONSOLE_DIR) -> None:
    """/ui/ serves `directory` (index.html at /ui/); /ui redirects there. Without a build,
    /ui/ answers 503 saying how to make one, rather than a bare 404."""

    @app.get("/ui", include_in_schema=False)
    def to_console() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=308)

    if (directory / "index.html").is_file():
        app.mount("/ui", StaticFiles(directory=directory, html=True), name="console")
    else:

        @app.get("/ui/{rest:path}", include_in_schema=False)
        def no_console(rest: str) -> JSONResponse:
            return JSONResponse(
                {"detail": f"the console is not built ({directory} has no index.html): run scripts/setup.sh"}, 503
            )
