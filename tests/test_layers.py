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
    "fileio.py": {"errors"},
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
