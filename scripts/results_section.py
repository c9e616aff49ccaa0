"""Print a Markdown section for docs/results.md from a finished run folder, and copy its
charts beside the docs, so every number in the docs is read from the run's own files:

    .venv/bin/python scripts/results_section.py ../runs/resnet20-fast docs/results/resnet20-fast
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main() -> None:
    run, dest = Path(sys.argv[1]), Path(sys.argv[2])
    res = json.loads((run / "results.json").read_text())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("curves.png", "confusion.png", "confusion.txt", "config.yaml", "metrics.csv"):
        if (run / name).is_file():
            shutil.copy(run / name, dest / name)
    test = res["test"] or {}
    speed = sorted(r["images_per_s"] for r in rows)[len(rows) // 2]
    print("| model | recipe | epochs | best val top-1 | test top-1 | test top-5 | wall time |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(
        f"| {res['model']} | {res['recipe']} | {res['epochs']} | {res['best_val_top1']:.2f}% | "
        f"{test.get('top1', float('nan')):.2f}% | {test.get('top5', float('nan')):.2f}% | "
        f"{res['wall_time_s'] / 60:.1f} min |"
    )
    print()
    print(f"- status: {res['status']}; best checkpoint: epoch {int(test.get('best_epoch', 0))}")
    print(
        f"- device: {res['device']}, {res['precision']}"
        f"{', channels_last' if res.get('channels_last') else ''}; {res['hardware']}"
    )
    print(f"- median training throughput: {speed:.0f} images/s")
    print(f"- data: {res['data']}")


if __name__ == "__main__":
    main()
