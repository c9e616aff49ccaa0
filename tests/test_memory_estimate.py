"""The memory estimate against measured peaks (benchmarks/memory_peaks.py's measurement: a
fresh process each, as peak RSS is a high-water mark), and the limits it is checked against."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab.analysis.memory_estimate import free_memory_bytes, memory_needed
from resnetlab.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def measured_peak(name: str, n: int, side: int, training: bool) -> int:
    """The benchmark's measurement: a fresh process's peak RSS growth over one step."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from memory_peaks import measured_peak as measure
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return int(measure(name, n, side, training))


CASES = [  # (model, batch, side, training): CIFAR and ImageNet shapes, both modes
    ("resnet20", 1000, 32, False),
    ("resnet20", 512, 32, True),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("name", "n", "side", "training"), CASES)
def test_the_estimate_is_within_1_5x_of_the_measured_peak(
    name: str, n: int, side: int, training: bool
) -> None:
    measured = measured_peak(name, n, side, training)
    with torch.device("meta"):
        model = create_model(name)
    estimate = memory_needed(model, (n, 3, side, side), training=training)
    assert 1 / 1.5 <= estimate / measured <= 1.5, (estimate, measured)


def test_the_estimate_leaves_the_model_as_it_was() -> None:
    model = create_model("resnet20").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    memory_needed(model, (4, 3, 32, 32), training=True)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_batch_over_the_process_limit_is_refused_in_one_line() -> None:
    """`ulimit -d` (RLIMIT_DATA) binds as much as the machine's free memory does: a batch
    that fits the machine but not the limit is refused, not killed."""
    assert (free_memory_bytes() or 0) > 4 * 2**30  # the machine alone would take it
    limit = 3 * 2**30  # the bench batch below needs ~4 GiB
    argv = [
        "bash",
        "-c",
        f"ulimit -d {limit // 1024} && {sys.executable} -m resnetlab bench resnet20 "
        "--batch-size 8000 --engines eager",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "needs about" in done.stderr, done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_inference_in_pieces_stays_under_the_limit() -> None:
    """``eval``/``predict`` run a batch that does not fit in pieces: the piece chosen under a
    200 MiB limit is measured in a fresh process, within 1.5× of its estimate and under
    the limit."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from memory_peaks import measured_pieces_peak
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    batch, measured = measured_pieces_peak("resnet20", 2000, 32, "200M")
    assert 1 < batch < 2000
    with torch.device("meta"):
        model = create_model("resnet20")
    estimate = memory_needed(model, (batch, 3, 32, 32), training=False)
    assert 1 / 1.5 <= estimate / measured <= 1.5, (estimate, measured)
    assert measured < 200 * 2**20, measured
