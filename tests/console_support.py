"""The console's front end (console/, Vite) for its tests: its npm packages installed from the
lock file once when missing, and vite or vitest run through npx."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CONSOLE = Path(__file__).resolve().parent.parent / "console"
NPM_TIMEOUT_S = 600.0


def npm_packages() -> Path:
    """console/node_modules, installed by `npm ci` (the lock file's exact versions) when absent."""
    modules = CONSOLE / "node_modules"
    if not (modules / ".package-lock.json").is_file():
        npm = shutil.which("npm")
        assert npm, "npm is needed to test the console (Node.js 20 or later)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CONSOLE, check=True, timeout=NPM_TIMEOUT_S)
    return modules


def npx(*args: str, timeout: float = NPM_TIMEOUT_S) -> subprocess.CompletedProcess:
    npm_packages()
    return subprocess.run(
        ["npx", "--no-install", *args],
        cwd=CONSOLE,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "CI": "1"},  # plain text to read the counts from
    )
