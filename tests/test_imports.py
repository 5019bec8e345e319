"""The layout of the packages: which may import which, and no import cycle.

The arrows point one way:

- lab (the emulated extranet) imports nothing of analyzer, xnetmon or dashboards: it knows no monitor.
- collector imports nothing of analyzer, xnetmon, lab or dashboards.
- collector.wire (pure byte codecs) imports nothing of the project outside collector.wire.
- analyzer imports from collector only collector.contract (the record contract),
  collector.system (shared helpers) and collector.bus (what both ends of the bus share),
  and nothing of xnetmon, lab or dashboards.
- dashboards may import analyzer.sla (it generates alert rules from the SLA policies) and
  nothing else of analyzer, nor xnetmon or lab.
- xnetmon (the command line and deployment wiring) may import all of them: it alone knows
  both the lab and the analyzer.
- No import cycle between modules.

Imports are read with `ast` from every module of those packages: imports inside functions
count, and so do `importlib.import_module(...)` calls, whose names are literals or f-strings
over a literal tuple the call iterates (xnetmon/cli.py), or over a tuple of names another
project module defines (xnetmon/commands/probe.py: collector.probes.registry.KINDS); a name
that cannot be resolved fails the test. Imports under `if TYPE_CHECKING:` are left out:
they never run, so they cannot make a cycle. An import counts against the module it names
(`from a import b` against a.b when that is a module), not the packages above it that
Python initialises first: those cannot close a cycle through their own submodules.
"""

from __future__ import annotations

import ast
import functools
import importlib
import itertools
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("collector", "analyzer", "xnetmon", "lab", "dashboards")


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported} ({self.where})"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _known(name: str) -> str | None:
    """The project module `name` loads (the longest known prefix), or None if not the project's."""
    modules = _modules()
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, parents: tuple[ast.AST, ...] = ()):
    """Every node with its ancestors, leaving out the bodies of `if TYPE_CHECKING:`."""
    yield node, parents
    for child in ast.iter_child_nodes(node):
        if isinstance(node, ast.If) and _is_type_checking(node) and child in node.body:
            continue
        yield from _walk(child, (*parents, node))


def _literal_strings(node: ast.AST, constants: dict[str, ast.AST]) -> list[str] | None:
    """The strings of a literal tuple or list, or of a module constant bound to one (in this
    module, or taken with `from PROJECT_MODULE import NAME`: then its value is read at run time)."""
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    if isinstance(node, ast.ImportFrom):  # a constant another project module defines
        value = getattr(importlib.import_module(node.module or ""), node.names[0].name, None)
        is_strings = isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
        return list(value) if is_strings else None
    if isinstance(node, (ast.Tuple, ast.List)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [e.value for e in node.elts]
    return None


def _values(node: ast.AST, parents: tuple[ast.AST, ...], constants: dict[str, ast.AST]) -> list[str] | None:
    """Every string `node` can be: a literal, a module constant, a loop variable over a literal
    tuple, or an f-string of those. None when it cannot be told from the source."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name):
        for loop in reversed(parents):
            if (
                isinstance(loop, (ast.For, ast.comprehension))
                and isinstance(loop.target, ast.Name)
                and loop.target.id == node.id
            ):
                return _literal_strings(loop.iter, constants)
        bound = constants.get(node.id)
        return [bound.value] if isinstance(bound, ast.Constant) and isinstance(bound.value, str) else None
    if isinstance(node, ast.JoinedStr):
        pieces = []
        for part in node.values:
            value = part.value if isinstance(part, ast.FormattedValue) else part
            if isinstance(part, ast.FormattedValue) and (part.conversion != -1 or part.format_spec):
                return None
            options = _values(value, parents, constants)
            if options is None:
                return None
            pieces.append(options)
        return ["".join(p) for p in itertools.product(*pieces)]
    return None


def _is_import_module(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "import_module"
        and isinstance(func.value, ast.Name)
        and func.value.id == "importlib"
    ) or (isinstance(func, ast.Name) and func.id == "import_module")


def _imports_of(module: str, path: Path) -> tuple[list[Import], list[str]]:
    """The project modules `module` imports, and the dynamic imports that could not be resolved
    to modules of the project."""
    tree = ast.parse(path.read_text(), str(path))
    constants: dict[str, ast.AST] = {
        t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    for n in tree.body:  # names taken from other project modules, one ImportFrom per name
        if isinstance(n, ast.ImportFrom) and not n.level and (n.module or "").split(".")[0] in PACKAGES:
            for alias in n.names:
                constants.setdefault(
                    alias.asname or alias.name, ast.ImportFrom(module=n.module, names=[ast.alias(alias.name)], level=0)
                )
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    unresolved = []
    for node, parents in _walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from a import b` loads module a.b when there is one, else takes a name of a
                submodule = f"{base}.{alias.name}"
                found.append((submodule if submodule in _modules() else base, node.lineno))
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            names = _values(node.args[0], parents, constants)
            if names is None:
                unresolved.append(
                    f"{module} ({path.relative_to(ROOT)}:{node.lineno}): "
                    f"importlib.import_module({ast.unparse(node.args[0])})"
                )
            else:
                found += [(name, node.lineno) for name in names]
                unresolved += [
                    f"{module} ({path.relative_to(ROOT)}:{node.lineno}): no module {name}"
                    for name in names
                    if name.split(".")[0] in PACKAGES and name not in _modules()
                ]
    imports = {}  # one per line and module imported: `from a import b, c` is one import of a
    for name, line in found:
        target = _known(name)
        if target is not None and target != module:
            imports.setdefault(Import(module, target, f"{path.relative_to(ROOT)}:{line}"))
    return list(imports), unresolved


@functools.cache
def _graph() -> tuple[tuple[Import, ...], tuple[str, ...]]:
    imports, unresolved = [], []
    for module, path in _modules().items():
        found, unknown = _imports_of(module, path)
        imports += found
        unresolved += unknown
    return tuple(imports), tuple(unresolved)


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _breaking(importers: str, allowed=lambda imported: True, forbidden: tuple[str, ...] = ()) -> list[str]:
    imports, _ = _graph()
    return [
        str(i)
        for i in imports
        if _within(i.importer, importers) and (_within(i.imported, *forbidden) or not allowed(i.imported))
    ]


def test_every_dynamic_import_names_a_module_the_test_can_read():
    _, unresolved = _graph()
    assert not unresolved, "name these with a literal or a literal tuple, of modules that exist:\n" + "\n".join(
        unresolved
    )


def test_the_reader_sees_function_level_and_importlib_imports():
    """The rules below are only as good as the graph: it must hold the imports that are not
    at the top of a module."""
    edges = {(i.importer, i.imported) for i in _graph()[0]}
    assert ("xnetmon.cli", "xnetmon.commands.analyzer") in edges  # importlib over COMMAND_MODULES
    assert ("xnetmon.commands.probe", "xnetmon.commands.probe_trace") in edges  # f-string over registry.KINDS
    assert ("xnetmon.commands.analyzer", "analyzer.service") in edges  # inside the handler


def test_lab_knows_no_monitor():
    bad = _breaking("lab", forbidden=("analyzer", "xnetmon", "dashboards"))
    assert not bad, "lab imports nothing of analyzer, xnetmon, dashboards:\n" + "\n".join(bad)


def test_collector_knows_nothing_above_it():
    bad = _breaking("collector", forbidden=("analyzer", "xnetmon", "lab", "dashboards"))
    assert not bad, "collector imports nothing of analyzer, xnetmon, lab, dashboards:\n" + "\n".join(bad)


def test_wire_codecs_stand_alone():
    bad = _breaking("collector.wire", allowed=lambda imported: _within(imported, "collector.wire"))
    assert not bad, "collector.wire imports nothing of the project outside collector.wire:\n" + "\n".join(bad)


def test_analyzer_takes_only_the_contract_and_shared_helpers_of_the_collector():
    bad = _breaking(
        "analyzer",
        forbidden=("xnetmon", "lab", "dashboards"),
        allowed=lambda imported: (
            not _within(imported, "collector")
            or _within(imported, "collector.contract", "collector.system", "collector.bus")
        ),
    )
    assert not bad, (
        "analyzer imports from collector only collector.contract, collector.system and collector.bus, "
        "nothing of xnetmon, lab, dashboards:\n" + "\n".join(bad)
    )


def test_dashboards_read_only_the_sla_policies_of_the_analyzer():
    # dashboards generates alert and recording rules from the SLA policies: analyzer.sla.
    bad = _breaking(
        "dashboards",
        forbidden=("xnetmon", "lab"),
        allowed=lambda imported: not _within(imported, "analyzer") or _within(imported, "analyzer.sla"),
    )
    assert not bad, "dashboards imports analyzer.sla only, and nothing of xnetmon, lab:\n" + "\n".join(bad)


def _cycles(imports: tuple[Import, ...]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), as sorted names."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        edges.setdefault(i.importer, set()).add(i.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_cycle_finder_finds_a_cycle():
    loop = (
        Import("a", "b", "a.py:1"),
        Import("b", "c", "b.py:1"),
        Import("c", "a", "c.py:1"),
        Import("c", "d", "c.py:2"),
    )
    assert _cycles(loop) == [["a", "b", "c"]]


def test_no_import_cycle():
    imports, _ = _graph()
    report = []
    for component in _cycles(imports):
        members = set(component)
        report.append(
            " <-> ".join(component)
            + ":\n"
            + "\n".join(f"  {i}" for i in imports if i.importer in members and i.imported in members)
        )
    assert not report, "import cycles (a module graph must be a tree of layers):\n" + "\n".join(report)
