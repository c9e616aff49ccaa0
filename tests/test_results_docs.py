"""docs/results.md summarises the committed reproduction reports: its tables must hold
exactly the numbers of the reports' results.json files (which the reports wrote from their
runs), so a summary can never drift from what was measured."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_results_md_tables_are_the_reports_numbers() -> None:
    spec = importlib.util.spec_from_file_location(
        "reproduction_tables", ROOT / "scripts" / "reproduction_tables.py"
    )
    assert spec is not None and spec.loader is not None
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    doc = (ROOT / "docs" / "results.md").read_text()
    assert tables.block() in doc, "run: python scripts/reproduction_tables.py --write"
    assert "| 56 |" in tables.block()  # the degradation table has the deep nets
