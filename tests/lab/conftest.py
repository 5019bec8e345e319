"""Fixtures for the lab's tests: the `small` topology is brought up once per session.

Every test that uses `lab` gets the lab with no active fault (faults a test leaves, even
when it fails, are healed after it), and the session ends with the lab torn down and a
check that none of its namespaces or processes remain.
"""

from __future__ import annotations

import pytest

from lab.testing import heal_everything, running_lab


@pytest.fixture(scope="session")
def small_lab():
    with running_lab("small") as lab:
        yield lab


@pytest.fixture
def lab(small_lab):
    heal_everything(small_lab)
    yield small_lab
    heal_everything(small_lab)
