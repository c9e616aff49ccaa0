"""The memory estimate against measured peaks, and the limits it is checked against.

Each measurement runs in a fresh process (peak RSS is a high-water mark: only a fresh process
measures one step), fp32, one thread, freed memory kept as the commands keep it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from resnetlab.analysis.memory_estimate import free_memory_bytes, memory_needed
from resnetlab.models import create_model

PEAK = textwrap.dedent(
    """
    import json, resource, sys, torch
    from resnetlab.infer.memory import keep_freed_memory
    from resnetlab.models import create_model
    name, n, side, training = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    torch.set_num_threads(1)
    keep_freed_memory()
    model = create_model(name).train(training)
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    base = rss()
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
    print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base))
    """
)

CASES = [  # (model, batch, side, training): CIFAR and ImageNet shapes, both modes
    ("resnet20", 1000, 32, False),
    ("resnet20", 256, 32, True),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("name", "n", "side", "training"), CASES)
def test_the_estimate_is_within_1_5x_of_the_measured_peak(
    name: str, n: int, side: int, training: bool
) -> None:
    argv = [sys.executable, "-c", PEAK, name, str(n), str(side), str(int(training))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
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
