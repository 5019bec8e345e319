"""The committed build (console/dist, what the analyzer serves at /ui/) is what the sources
build to, and the hint words it carries are the command line's (`xnetmon why`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.console_support import CONSOLE, npx
from xnetmon.status_view import KIND_WORDS


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_committed_build_is_the_build_of_the_sources(tmp_path):
    run = npx("vite", "build", "--outDir", str(tmp_path / "dist"), "--emptyOutDir")
    assert run.returncode == 0, run.stdout + run.stderr
    built, committed = files(tmp_path / "dist"), files(CONSOLE / "dist")
    assert sorted(built) == sorted(committed), "console/dist is stale: run `npm run build` in console/ and commit it"
    assert built == committed, "console/dist is stale: run `npm run build` in console/ and commit it"


def test_the_console_words_hints_as_xnetmon_why_does():
    words = json.loads((CONSOLE / "src" / "hint_words.json").read_text())
    assert words["kinds"] == KIND_WORDS
