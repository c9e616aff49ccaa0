"""The time-to-accuracy study: test top-1 against wall minutes, recipe against recipe.

    python scripts/time_to_accuracy.py --out ../runs/tta --model resnet20 --minutes 5 10 \\
        --arm fast --arm "fast+ema=optim.ema_decay=0.999" --data DATA [--seed 0]
    python scripts/time_to_accuracy.py --out ../runs/tta --report docs/results/time-to-accuracy

Each arm is a label, ``=`` and the ``--set`` overrides it adds to ``resnetlab train --recipe
RECIPE`` (the recipe is the label's part before ``+``; several overrides are separated by
commas), trained with ``--minutes M`` (``run.budget_min``: the schedule is sized to end in
M minutes on this machine, timed from its warm-up) for every model, budget and seed asked.
Every run is a subprocess of the real command line, timed from start to exit (the decoded
data are cached by the first run; ``wall_min`` is the whole command, test evaluation
included), with the machine's load average before and after it beside the result: the
study's measure is wall time, so run it when nothing else trains on the machine.

The ledger ``OUT/ledger.json`` holds one row per finished run; a row already there is not
trained again, so the study resumes where it stopped. ``--report DIR`` writes DIR/results.json
(``{"runs": [{"model", "recipe", "wall_min", "test_top1", "seed", "cpu", "command", …}]}``),
DIR/report.md and DIR/time-to-accuracy.png from the ledger. Models are selected on the
validation split by the runs themselves; the test split is read once per run, at its end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from resnetlab.fileio import pyplot, save_figure, write_text_atomic
from resnetlab.runtime.execution import hardware


def parse_arm(text: str) -> tuple[str, str, list[str]]:
    """``"fast+ema=optim.ema_decay=0.999,run.tta=flip"`` → label, recipe, overrides."""
    label, _, sets = text.partition("=")
    recipe = label.split("+", 1)[0]
    if not label or not recipe:
        raise SystemExit(f"time_to_accuracy: error: an arm needs a label, got {text!r}")
    return label, recipe, [s for s in sets.split(",") if s]


def run_name(model: str, label: str, minutes: float, seed: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in label)
    return f"{model}-{safe}-{minutes:g}min-s{seed}"


def train_command(
    args: argparse.Namespace,
    name: str,
    model: str,
    recipe: str,
    sets: list[str],
    minutes: float,
    seed: int,
) -> list[str]:
    argv = ["train", "--recipe", recipe, "--model", model, "--minutes", f"{minutes:g}"]
    argv += ["--seed", str(seed), "--out", str(args.out), "--name", name]
    argv += ["--data", args.data] if args.data else []
    for item in [*args.set, *sets]:
        argv += ["--set", item]
    return argv


def run_one(name: str, argv: list[str], out: Path) -> dict[str, Any] | None:
    """Train one arm as a subprocess; its ledger row, or None if it did not finish."""
    before = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "resnetlab", *argv], check=False)
    wall = (time.monotonic() - started) / 60
    results_file = out / name / "results.json"
    if done.returncode != 0 or not results_file.is_file():
        print(f"{name}: exit {done.returncode}, left out of the ledger", file=sys.stderr)
        return None
    results = json.loads(results_file.read_text())
    test = results.get("test") or {}
    if "top1" not in test:
        print(f"{name}: no test figure ({results.get('status')}), left out", file=sys.stderr)
        return None
    return {
        "name": name,
        "wall_min": round(wall, 2),
        "test_top1": test["top1"],
        "best_val_top1": results.get("best_val_top1"),
        "epochs": results.get("epochs"),
        "status": results.get("status"),
        "cpu": results.get("hardware") or hardware(),
        "load_before": round(before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "command": "resnetlab " + shlex.join(argv),
    }


def read_ledger(out: Path) -> list[dict[str, Any]]:
    path = out / "ledger.json"
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def study(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    ledger = read_ledger(args.out)
    arms = [parse_arm(arm) for arm in args.arm]
    for (label, recipe, sets), model, minutes, seed in itertools.product(
        arms, args.model, args.minutes, args.seed
    ):
        name = run_name(model, label, minutes, seed)
        if any(row["name"] == name for row in ledger):
            print(f"{name}: in the ledger already")
            continue
        argv = train_command(args, name, model, recipe, sets, minutes, seed)
        row = run_one(name, argv, args.out)
        if row is None:
            continue
        row |= {"model": model, "recipe": label, "budget_min": minutes, "seed": seed}
        ledger.append(row)
        write_text_atomic(args.out / "ledger.json", json.dumps({"runs": ledger}))
        print(f"{name}: {row['test_top1']:.2f}% in {row['wall_min']:.1f} min")


def report(out: Path, dest: Path) -> None:
    runs = read_ledger(out)
    if not runs:
        raise SystemExit(f"time_to_accuracy: error: no finished runs in {out / 'ledger.json'}")
    dest.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dest / "results.json", json.dumps({"runs": runs}, indent=1) + "\n")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in sorted({(r["model"], r["recipe"]) for r in runs}):
        rows = sorted((r for r in runs if (r["model"], r["recipe"]) == key), key=_minutes)
        ax.plot(
            [r["wall_min"] for r in rows], [r["test_top1"] for r in rows], "o-", label=" ".join(key)
        )
    ax.set_xlabel("wall minutes (the whole command)")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, dest / "time-to-accuracy.png")
    plt.close(fig)
    lines = [
        "# Time to accuracy: test top-1 against wall minutes",
        "",
        "Each row is one `resnetlab train --minutes M` run (the schedule sized to end in M "
        "minutes, timed from its warm-up), timed from start to exit; the load average "
        "(1 min) before and after it says how quiet the machine was. Checkpoints are "
        "chosen on the validation split; the test split is read once per run.",
        "",
        "| model | recipe | budget (min) | wall (min) | test top-1 | best val | epochs "
        "| seed | load before/after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["model"], _minutes(r), r["recipe"], r["seed"])):
        lines.append(
            f"| {r['model']} | {r['recipe']} | {r['budget_min']:g} | {r['wall_min']:.1f} "
            f"| {r['test_top1']:.2f}% | {r['best_val_top1']:.2f}% | {r['epochs']} "
            f"| {r['seed']} | {_load(r)} |"
        )
    lines += ["", "![test top-1 against wall minutes](time-to-accuracy.png)", ""]
    lines += ["## Commands and machines", ""]
    lines += [
        f"- `{r['command']}` on {r['cpu']}" + (f" ({r['note']})" if r.get("note") else "")
        for r in runs
    ]
    write_text_atomic(dest / "report.md", "\n".join(lines) + "\n")
    print(f"report: {dest / 'report.md'}")


def _load(row: dict[str, Any]) -> str:
    """The load averages of a row, or a dash where they were not kept (a row transcribed
    from an earlier session's records carries a ``note`` saying so)."""
    if row.get("load_before") is None:
        return "—"
    return f"{row['load_before']:.1f} / {row['load_after']:.1f}"


def _minutes(row: dict[str, Any]) -> float:
    return float(row["budget_min"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="run store and ledger")
    p.add_argument("--model", nargs="+", default=["resnet20"])
    p.add_argument("--minutes", nargs="+", type=float, default=[])
    p.add_argument("--arm", action="append", default=[], help="LABEL[=KEY=VALUE,…]")
    p.add_argument("--seed", nargs="+", type=int, default=[0])
    p.add_argument("--data", help="the training data (default: the recipe's)")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE for every run")
    p.add_argument("--report", type=Path, help="write results.json, report.md and the PNG here")
    args = p.parse_args(argv)
    if args.arm and args.minutes:
        study(args)
    if args.report:
        report(args.out, args.report)
    elif not (args.arm and args.minutes):
        p.error("give --arm and --minutes to train, or --report DIR")


if __name__ == "__main__":
    main()
