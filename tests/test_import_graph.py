"""The package's shape, held by the suite (issue 14's "one house"): kernels work on arrays and
know no layer, model, activation or optimizer; no import circle in minicnn/ or benchmarks/.

The graph is read from the source with `ast` (nothing is imported), so a circle hidden behind a
function-level import counts as well: a lazy import that closes a loop is a knot a reader has to
untie by hand, whether or not Python happens to tolerate it. Imports under `if TYPE_CHECKING:`
are left out (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("minicnn", "benchmarks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every module name this file imports (absolute, resolved against `module`)."""
    names: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` names the submodule pkg.sub (the package's __init__ has run
            # already, as for any import of a submodule); `from pkg import name` names pkg
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                names.add(sub if sub in modules else target)
    return names


def _graph() -> dict[str, set[str]]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            files[_module_name(path)] = path
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        wanted = _imported(tree, module, path.name == "__init__.py", set(files))
        graph[module] = {m for m in wanted if m in files and m != module}
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    # a reader that found nothing would pass every test below
    assert len(GRAPH) > 40
    assert "minicnn.kernels.numba_conv" in GRAPH["minicnn.kernels.numba_ops"]
    assert "minicnn.fusion" in GRAPH["minicnn.model"]


def test_cycle_finder_finds_a_planted_circle():
    planted = {k: set(v) for k, v in GRAPH.items()}
    planted["minicnn.kernels.geometry"].add("minicnn.model")
    assert any("minicnn.kernels.geometry" in c for c in _cycles(planted))


def test_no_import_circle_in_minicnn_or_benchmarks():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("minicnn.kernels")))
def test_kernels_import_no_layer_model_activation_or_optimizer(module):
    forbidden = ("minicnn.layers", "minicnn.model", "minicnn.models", "minicnn.activations",
                 "minicnn.optimizers", "minicnn.fusion")
    bad = sorted(m for m in GRAPH[module] if m.startswith(forbidden))
    assert bad == [], f"{module} imports {bad}"
