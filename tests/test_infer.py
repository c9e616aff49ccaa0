"""Fast inference: exact BN folding, engines that agree with the model, engine selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnetlab.infer.engines import eager_runner
from resnetlab.infer.fast import optimize_for_inference
from resnetlab.infer.folding import fold_batchnorm, prepare, randomize_batchnorm
from resnetlab.models import create_model


@pytest.mark.parametrize(
    ("name", "side", "folded_bns"),
    [
        ("resnet20", 32, 19),
        ("resnet50", 64, 53),
        ("resnet18", 64, 20),
        ("vgg11_bn", 32, 8),
        ("preact_resnet20", 32, 9),
        ("resnext50_32x4d", 64, 53),
    ],
)
def test_bn_folding_is_exact(name: str, side: int, folded_bns: int) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name))
    x = torch.randn(2, 3, side, side)
    folded = fold_batchnorm(model)
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    after = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    # Pre-activation units fold only conv1 → bn2; bn1 and the closing BN follow no conv.
    assert before - after == folded_bns
    with torch.no_grad():
        a, b = model(x).double(), folded(x).double()
    assert float((a - b).abs().max() / a.abs().max()) < 1e-5
    assert model.training is False and all(isinstance(p, nn.Parameter) for p in model.parameters())


def test_prepare_leaves_the_original_alone() -> None:
    model = randomize_batchnorm(create_model("resnet20"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert not any(p.requires_grad for p in prepared.parameters())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(eager_runner(prepared)(x), model(x), rtol=1e-4, atol=1e-4)


def test_optimize_for_inference_picks_a_measured_engine() -> None:
    pytest.importorskip("onnxruntime")
    model = randomize_batchnorm(create_model("resnet20"))
    x = torch.randn(8, 3, 32, 32)
    fast = optimize_for_inference(
        model, x, engines=["eager", "eager-bf16", "onnxruntime"], min_seconds=0.2
    )
    measured = {r.engine for r in fast.results} | set(fast.skipped)
    assert measured == {"eager", "eager-bf16", "onnxruntime"}
    assert fast.engine in {r.engine for r in fast.results}
    assert min(fast.results, key=lambda r: r.seconds_per_batch).engine == fast.engine
    for r in fast.results:  # fp32 engines agree to rounding, bf16 to its precision
        assert r.max_rel_error < (5e-2 if "bf16" in r.engine else 1e-5)
    with torch.no_grad():
        ref = model(x)
    assert fast(x).argmax(1).eq(ref.argmax(1)).float().mean() > 0.7
    assert "← picked" in fast.report()


def test_unknown_engine_is_skipped_with_a_reason() -> None:
    model = create_model("resnet20").eval()
    fast = optimize_for_inference(
        model, torch.randn(2, 3, 32, 32), engines=["eager", "warp"], min_seconds=0.05
    )
    assert fast.engine == "eager"
    assert "unknown engine" in fast.skipped["warp"]


_FAULTS = """
import resource, sys, torch
from resnetlab.infer.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20)  # 64 MiB: above glibc's largest mmap threshold
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, sum(faults[-3:]), faults)
"""


def test_keeping_freed_memory_stops_page_faults_on_large_tensors() -> None:
    """The measurable effect of ``keep_freed_memory``: by default each 64 MiB tensor is a
    fresh mmap, faulted in page by page (16,384 pages); with freed memory kept, once the heap
    has grown (the first allocations), later ones reuse it and fault nothing. Separate
    processes, because the setting is process-wide and one way."""
    import subprocess
    import sys

    def run(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
        ).stdout.split()
        print(mode, " ".join(out[2:]))
        return out[0], int(out[1])

    kept, faults_kept = run("keep")
    if kept != "True":
        pytest.skip("not glibc: nothing to tune")
    _, faults_default = run("default")
    assert faults_default > 3 * 16_000  # three fresh mappings, every page touched
    assert faults_kept < 1_000


def test_fast_model_reports_whether_memory_is_kept() -> None:
    model = create_model("resnet20").eval()
    fast = optimize_for_inference(
        model, torch.randn(2, 3, 32, 32), engines=["eager"], min_seconds=0.05, keep_memory=False
    )
    assert not fast.memory_kept and "freed memory kept" not in fast.report()
