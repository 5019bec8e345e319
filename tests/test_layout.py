"""The tests mirror the packages: every module has a twin test file at the same place under tests/.

The twin of `PKG/.../name.py` is `tests/PKG/.../test_name.py`. Two spellings are also its twin:
- `test_<package>_<name>.py` (package: the module's directory), for modules whose basename
  another module already uses: test files have no __init__.py, so their basenames must be
  unique across tests/ (pytest's prepend import mode);
- `test_<name>_<aspect>.py`, for a module whose tests are split by aspect, as long as neither
  `<name>_<aspect>` nor `<aspect>` is itself a module beside it (`test_trace_match.py` is the
  twin of `trace_match.py`, never a part of `trace.py`'s; `tests/lab/test_lab_build.py` is
  `lab/build.py`'s, not a part of `lab/lab.py`'s).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
PACKAGES = ("collector", "analyzer", "xnetmon", "lab", "dashboards")
NOT_MODULES = {"__init__.py", "__main__.py"}

# Modules that only declare data, with no behaviour of their own to test; each says why.
WITHOUT_TWIN = {
    "lab/errors.py": "one exception class, LabError; the lab tests that expect it exercise it",
}


def modules() -> list[Path]:
    return sorted(
        p.relative_to(REPO) for package in PACKAGES for p in (REPO / package).rglob("*.py") if p.name not in NOT_MODULES
    )


def is_twin(test_stem: str, module: Path, siblings: set[str]) -> bool:
    name = test_stem.removeprefix("test_")
    if name in (module.stem, f"{module.parent.name}_{module.stem}"):
        return True
    aspect = name.removeprefix(f"{module.stem}_")
    # test_lab_build.py in tests/lab/ is build.py's twin (the package-prefixed spelling), not an aspect of lab.py
    return aspect != name and name not in siblings and aspect not in siblings


def twins(module: Path) -> list[Path]:
    siblings = {p.stem for p in (REPO / module.parent).glob("*.py")}
    return sorted(t for t in (TESTS / module.parent).glob("test_*.py") if is_twin(t.stem, module, siblings))


def test_every_module_has_a_twin_test_file():
    missing = [m for m in modules() if str(m) not in WITHOUT_TWIN and not twins(m)]
    assert not missing, (
        f"{len(missing)} modules have no twin test file (tests/<package>/.../test_<name>.py; "
        "see the docstring of tests/test_layout.py):\n"
        + "\n".join(f"  {m}  ->  tests/{m.parent}/test_{m.stem}.py" for m in missing)
    )


def test_the_modules_without_a_twin_exist_and_have_none():
    listed = {Path(m) for m in WITHOUT_TWIN}
    gone = sorted(str(m) for m in listed if not (REPO / m).is_file())
    twinned = sorted(str(m) for m in listed if (REPO / m).is_file() and twins(m))
    assert (gone, twinned) == ([], []), "stale entries in WITHOUT_TWIN: take them out"


def test_test_file_basenames_are_unique():
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if path.name not in ("conftest.py", "__init__.py"):
            by_name[path.name].append(str(path.relative_to(REPO)))
    repeated = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not repeated, f"test files share a basename (pytest imports them by it): {repeated}"
