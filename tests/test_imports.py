"""The import structure of ``lib/``: no module imports another in a cycle — not even inside a function.

A cycle hidden in a function-level import works until someone moves the import to the top, or until the two
modules are imported in the other order; then one of them sees the other half-initialised. So the walk below reads
every ``import`` statement with :mod:`ast` (module level, inside functions and classes, relative imports resolved)
and fails on any cycle, naming each edge with its file and line. Imports under ``if TYPE_CHECKING:`` are skipped:
they never run.

Run: ``python -m pytest -q tests/test_imports.py``
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``file:line`` (``nested``: inside a function or class)."""

    source: str
    target: str
    file: str
    line: int
    nested: bool

    def __str__(self) -> str:
        where = "inside a function/class" if self.nested else "module level"
        return f"{self.source} → {self.target}   ({self.file}:{self.line}, {where})"


def _modules(package_dir: Path, base: Path) -> dict[str, Path]:
    """``{"lib.data.datasets": path, "lib.data": path/to/__init__.py, …}`` for every ``.py`` file below ``package_dir``."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import node with whether it is nested in a function/class; ``if TYPE_CHECKING:`` bodies skipped."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, nested))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:  # the else branch does run
                    visit(ast.Module(body=[other], type_ignores=[]), nested)
            else:
                inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
                visit(child, inner)

    visit(tree, False)
    return found


def import_graph(package_dir: Path, base: Path | None = None) -> dict[str, list[Edge]]:
    """The imports between the modules of one package: ``{module: [Edge to another module of the package], …}``.

    ``from . import x`` points to the submodule ``x`` when it exists, else to the package (its ``__init__``);
    ``from .a import f`` points to ``a``; absolute imports of the package count the same way.
    """
    base = base or package_dir.parent
    modules = _modules(package_dir, base)
    graph: dict[str, list[Edge]] = {m: [] for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        rel = path.relative_to(base).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, nested in _import_nodes(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                    origin = ".".join(parts + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    targets.append(sub if sub in modules else origin)
            for target in targets:
                # `import lib.data.images` names a module; keep the longest known prefix of a dotted name
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].append(Edge(name, target, rel, node.lineno, nested))
    return graph


def find_cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One cycle (as its edges) per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:  # recursive: lib has a few dozen modules, far below the recursion limit
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for e in graph.get(v, []):
            w = e.target
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)

    cycles = []
    for comp in components:
        members = set(comp)
        # shortest path back to the start inside the component (BFS), so the message shows a concrete cycle
        start = comp[0]
        prev: dict[str, Edge] = {}
        queue = [start]
        found: Edge | None = None
        while queue and found is None:
            v = queue.pop(0)
            for e in sorted(graph[v], key=lambda e: (e.target, e.line)):
                if e.target not in members:
                    continue
                if e.target == start:
                    found = e
                    break
                if e.target not in prev:
                    prev[e.target] = e
                    queue.append(e.target)
        path = [found]
        while path[0].source != start:
            path.insert(0, prev[path[0].source])
        cycles.append(path)
    return cycles


def _describe(cycles: list[list[Edge]]) -> str:
    lines = [f"{len(cycles)} import cycle(s) in lib/ — break each by moving the shared pieces into a module both "
             "import (as lib/data/common.py does for lib.data), or the dispatch into a module above both:"]
    for n, cycle in enumerate(cycles, 1):
        names = " → ".join([cycle[0].source] + [e.target for e in cycle])
        lines.append(f"  cycle {n}: {names}")
        lines += [f"      {e}" for e in cycle]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the checks
def test_lib_has_no_import_cycle():
    graph = import_graph(ROOT / "lib")
    assert "lib.data.datasets" in graph and graph["lib.data.splits"], "the walk found no lib.data modules"
    cycles = find_cycles(graph)
    assert not cycles, _describe(cycles)


def test_lib_data_loaders_do_not_import_each_other():
    # the layering of lib/data (see lib/data/__init__.py): the two loaders meet only in common/cache/images
    graph = import_graph(ROOT / "lib")
    targets = {m: {e.target for e in graph[m]} for m in ("lib.data.datasets", "lib.data.volumes", "lib.data.common")}
    assert "lib.data.volumes" not in targets["lib.data.datasets"]
    assert "lib.data.datasets" not in targets["lib.data.volumes"]
    assert targets["lib.data.common"] <= {"lib.errors", "lib.data.patients"}


def test_the_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("from ..b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from .sub import a  # hidden in a function\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import g\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = import_graph(pkg)
    assert {e.target for e in graph["pkg.b"]} == {"pkg.sub.a"} and graph["pkg.b"][0].nested
    assert graph["pkg.c"] == [] and {e.target for e in graph["pkg.d"]} == {"pkg.c"}
    cycles = find_cycles(graph)
    assert len(cycles) == 1
    message = _describe(cycles)
    assert "pkg.b → pkg.sub.a → pkg.b" in message and "pkg/b.py:2, inside a function/class" in message


@pytest.mark.parametrize("source, expected", [
    ("from . import b\n", {"pkg.b"}),          # a submodule
    ("from . import VALUE\n", {"pkg"}),        # a name of the package's __init__
    ("from .b import x\n", {"pkg.b"}),
    ("import os, json\n", set()),              # outside the package: not an edge
])
def test_relative_imports_resolve_to_modules(tmp_path, source, expected):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    (pkg / "a.py").write_text(source)
    (pkg / "b.py").write_text("x = 1\n")
    assert {e.target for e in import_graph(pkg)["pkg.a"]} == expected


def test_the_app_starts_without_matplotlib():
    """matplotlib (0.3 s) is imported on the first figure, not while the app starts: the first page's time
    (README: cold start ≤ 6 s) depends on it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['IPython'] = None; import space.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
