"""The memory estimate (``resnetlab.analysis.memory_estimate``) against measured peaks: each
case runs in a fresh process (peak RSS is a high-water mark), fp32, one thread, freed memory
kept as the commands keep it; training is SGD with momentum, two steps. Prints the Markdown
tables of docs/bad-input.md ("Memory: refused before it is allocated"): one step per case,
then inference in pieces (the batch ``eval``/``predict`` choose under a memory limit);
``--pieces`` prints the second table only.

    .venv/bin/python benchmarks/memory_peaks.py [--pieces]
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import torch

from resnetlab.analysis.memory_estimate import memory_needed
from resnetlab.models import create_model

PEAK = """
import json, os, resource, sys, torch
from resnetlab.infer.memory import keep_freed_memory
from resnetlab.models import create_model
name, n, side, training = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.set_num_threads(1)
keep_freed_memory()
model = create_model(name).train(training)
if len(sys.argv) > 5:  # in pieces: the batch eval/predict would run under this limit
    from resnetlab.analysis.memory_estimate import batch_that_fits
    os.environ["RESNETLAB_MEMORY_LIMIT"] = sys.argv[5]
    n = batch_that_fits(model, (n, 3, side, side)).batch
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
base = status("VmRSS")
try:  # reset the high-water mark to the current RSS: earlier peaks must not count
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
x = torch.randn(n, 3, side, side)
if training:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        torch.nn.functional.cross_entropy(model(x), torch.zeros(n, dtype=torch.long)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
else:
    with torch.no_grad():
        model(x)
peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps([n, peak - base] if len(sys.argv) > 5 else peak - base))
"""

CASES = [  # (model, batch, side, training)
    ("resnet20", 2000, 32, False),
    ("resnet56", 1000, 32, False),
    ("resnet18", 32, 224, False),
    ("resnet50", 32, 224, False),
    ("vgg16", 16, 224, False),
    ("resnet101", 16, 224, False),
    ("wide_resnet50_2", 16, 224, False),
    ("resnext50_32x4d", 16, 224, False),
    ("preact_resnet164", 256, 32, False),
    ("resnet20", 512, 32, True),
    ("resnet56", 256, 32, True),
    ("resnet18", 32, 224, True),
    ("resnet50", 16, 224, True),
    ("vgg16", 8, 224, True),
    ("resnet101", 8, 224, True),
    ("preact_resnet164", 64, 32, True),
    ("resnext50_32x4d", 8, 224, True),
]


# In pieces (eval, predict): (model, images asked for in one batch, side, memory limit). The
# process runs the one batch that ``batch_that_fits`` chooses under the limit; each later
# batch of the command is the same size, so its peak is the command's.
PIECES = [
    ("resnet20", 10_000, 128, "1G"),  # eval --batch-size 10000 at 128 px
    ("resnet18", 6_000, 224, "1G"),  # predict of 6,000 photos in one batch
    ("resnet50", 6_000, 224, "1G"),
]


def measured_pieces_peak(name: str, n: int, side: int, limit: str) -> tuple[int, int]:
    """The batch chosen for ``n`` images under ``limit``, and the peak RSS growth of one
    forward pass at it (a fresh process)."""
    argv = [sys.executable, "-c", PEAK, name, str(n), str(side), "0", limit]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    batch, peak = json.loads(done.stdout.strip().splitlines()[-1])
    return int(batch), int(peak)


def measured_peak(name: str, n: int, side: int, training: bool) -> int:
    argv = [sys.executable, "-c", PEAK, name, str(n), str(side), str(int(training))]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print("| model | batch | mode | measured | estimate | estimate ÷ measured |")
    print("|---|---:|---|---:|---:|---:|")
    for name, n, side, training in CASES:
        with torch.device("meta"):
            model = create_model(name)
        estimate = memory_needed(model, (n, 3, side, side), training=training)
        peak = measured_peak(name, n, side, training)
        mode = "training" if training else "inference"
        print(
            f"| {name} | {n}×{side}² | {mode} | {peak / 2**20:,.0f} MB | "
            f"{estimate / 2**20:,.0f} MB | {estimate / peak:.2f} |",
            flush=True,
        )
    pieces()


def pieces() -> None:
    """The second table: eval and predict in pieces, under a memory limit."""
    print("\n| model | asked | limit | batch run | measured | estimate | estimate ÷ measured |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, side, limit in PIECES:
        with torch.device("meta"):
            model = create_model(name)
        batch, peak = measured_pieces_peak(name, n, side, limit)
        estimate = memory_needed(model, (batch, 3, side, side), training=False)
        print(
            f"| {name} | {n:,}×{side}² | {limit} | {batch:,} | {peak / 2**20:,.0f} MB | "
            f"{estimate / 2**20:,.0f} MB | {estimate / peak:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    if "--pieces" in sys.argv[1:]:
        pieces()
    else:
        main()
