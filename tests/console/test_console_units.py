"""The console's unit tests (console/src/*.test.js, vitest) under pytest, so the README's test
command covers them: state to style, layout by role, province filter, hints and their words."""

from __future__ import annotations

import re

from tests.console_support import npx


def test_vitest_suite_passes():
    run = npx("vitest", "run", "--reporter=verbose")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    passed = re.search(r"Tests\s+(\d+) passed", output)
    assert passed and int(passed.group(1)) >= 10, output
