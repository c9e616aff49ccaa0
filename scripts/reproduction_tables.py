"""The reproduction tables of docs/results.md, made from the committed reports' numbers.

Each table is computed from a report's ``results.json`` under ``docs/results/`` (which the
report wrote from its runs' files), so the summary cannot drift from the reports:
``tests/test_results_docs.py`` checks that docs/results.md holds exactly what this prints.

    python scripts/reproduction_tables.py            # print the block
    python scripts/reproduction_tables.py --write    # replace it in docs/results.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BEGIN = "<!-- reproduction tables: begin (scripts/reproduction_tables.py --write) -->"
END = "<!-- reproduction tables: end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _depth(model: str) -> int:
    return int(re.sub(r"\D", "", model.split("-")[0]) or 0)


def _mean(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}%"
    return f"{statistics.mean(values):.2f}% ± {statistics.stdev(values):.2f}"


def degradation() -> list[str]:
    data = _load("degradation")
    if data is None:
        return []
    models = data["models"]
    lines = [
        "| depth | plain: training error | plain: test error | ResNet: training error "
        "| ResNet: test error |",
        "|---:|---:|---:|---:|---:|",
    ]
    for d in sorted({_depth(m) for m in models}):
        cells = []
        for kind in ("plain", "resnet"):
            m = models.get(f"{kind}{d}")
            cells += [_mean(m["train_error"]), _mean(m["test_error"])] if m else ["–", "–"]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines


def cifar_table(name: str = "cifar-table") -> list[str]:
    data = _load(name)
    if data is None:
        return []
    lines = [
        "| model | params | paper error | ours: best by validation (mean ± std) | seeds "
        "| per seed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model in sorted(data["models"], key=_depth):
        m = data["models"][model]
        spread = f" ({_mean(m['test_error'])})" if len(m["test_error"]) > 1 else ""
        per_seed = ", ".join(f"{t:.2f}" for t in m["test_error"])
        lines.append(
            f"| ResNet-{_depth(model)} | {m['params'] / 1e6:.2f}M | {m['paper']}% | "
            f"{m['chosen_test_error']:.2f}%{spread} | {len(m['seeds'])} | {per_seed} |"
        )
    return lines


def responses() -> list[str]:
    data = _load("responses")
    if data is None:
        return []
    stds = data["stds"]
    order = sorted(stds, key=lambda m: (_depth(m), m))
    return ["| model | mean std of the 3×3 layers' responses |", "|---|---:|"] + [
        f"| {m} | {statistics.mean(stds[m]):.3f} |" for m in order
    ]


def block() -> str:
    parts = {
        "Degradation (Fig. 6), CPU budget protocol": degradation(),
        "CIFAR-10 table (Table 6), CPU budget protocol": cifar_table(),
        "CIFAR-10 table (Table 6), CPU budget protocol at 20 epochs (7,020 iterations)": (
            cifar_table("cifar-table-20-epochs")
        ),
        "The paper's full schedule (64k iterations, batch 128)": cifar_table("cifar-table-paper"),
        "The paper's step schedule at the same 3,510 iterations": cifar_table("step-schedule"),
        "Layer responses (Fig. 7)": responses(),
    }
    out = [BEGIN]
    for title, lines in parts.items():
        if lines:
            out += ["", f"**{title}**", "", *lines]
    return "\n".join([*out, "", END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the block in results.md")
    args = parser.parse_args()
    text = block()
    if not args.write:
        print(text)
        return
    doc = ROOT / "docs" / "results.md"
    old = doc.read_text()
    start, end = old.index(BEGIN), old.index(END) + len(END)
    doc.write_text(old[:start] + text + old[end:])


if __name__ == "__main__":
    main()
