"""Imports point down: the bottom layer and ``models`` never import the layers above them
(until the import-linter contract in pyproject.toml covers every layer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "resnetlab"

# module or package → the resnetlab packages/modules it may import
BELOW = {
    "errors.py": set(),
    "locking.py": {"errors"},
    "fileio.py": {"errors", "locking"},
    "download.py": {"errors", "fileio"},
    "models": {"errors", "fileio", "download", "models"},
}


def _imports(path: Path) -> set[str]:
    """The ``resnetlab.X`` first parts a file imports (at any depth of the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        found |= {n.split(".")[1] for n in names if n.startswith("resnetlab.")}
    return found


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_imports_point_down(layer: str) -> None:
    target = PACKAGE / layer
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for path in files:
        extra = {f.removesuffix(".py") for f in _imports(path)} - BELOW[layer]
        assert not extra, f"{path.relative_to(PACKAGE)} imports resnetlab.{sorted(extra)}"


def _module_graph() -> dict[str, set[str]]:
    """Every module of the package → the package's modules it imports, anywhere in the file
    (inside functions and under ``TYPE_CHECKING`` too). ``from P import M`` counts as an
    import of the module ``P.M`` where there is one, else of ``P``."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("resnetlab", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        found = set()
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
        # ``from P import M`` names P too: keep P only where no submodule of it was meant.
        graph[name] = {t for t in found if not any(u.startswith(t + ".") for u in found)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (a list of modules, the first repeated last), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_no_import_cycle_anywhere() -> None:
    """No module imports, even inside a function, a module that imports it back."""
    assert _cycle(_module_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
