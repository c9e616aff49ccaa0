"""Our int8 ResNet-50 with its residual adds fused into the convs (the shipped ``int8``
engine) against the same program with the adds left out of the convs, and against our
``compile-bf16``, timed in interleaved rounds:

    .venv/bin/python benchmarks/int8_residual_add.py [--batch 16] [--rounds 5] [--seconds 30]
    .venv/bin/python benchmarks/int8_residual_add.py --smoke   # ResNet-20, checks the code runs

Why (docs/speed.md, where our int8 loses time): torch's fused int8 conv + add kernel
(``onednn::qconv2d_pointwise.binary``, oneDNN's ``sum``) writes its result into the shortcut
in place and then copies it (``aten::clone``) because an operator may not return an alias
of its input. The variant here never calls that kernel: the quantizer is kept from fusing
each add into its conv, every conv's output is quantized to uint8 and Inductor fuses
dequantize + add + ReLU + quantize into one loop. It moves as many bytes as the fused op
plus its copy and rounds once more, so only a quiet run can say which is faster. Each
engine's ``aten::clone`` calls per batch and its largest logit error against fp32 are
printed too (the counts are valid under load; the rates are not).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from common import interleaved
from torch import Tensor, nn

from resnetlab.infer.engines import build_runner
from resnetlab.infer.fast import time_runner
from resnetlab.infer.folding import prepare, randomize_batchnorm
from resnetlab.infer.memory import keep_freed_memory
from resnetlab.infer.quantize import QuantizedNet, _export, torchao_pt2e
from resnetlab.models import create_model
from resnetlab.runtime.execution import hardware

ADDS = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)


def unfused_quantizer() -> Any:
    """The x86 quantizer without its conv + add patterns; each residual add instead gets
    uint8 inputs (so its conv's output is quantized) and is left to Inductor."""
    _, xiq = torchao_pt2e()

    class Unfused(xiq.X86InductorQuantizer):  # type: ignore[misc, name-defined]
        def _annotate_conv2d_binary_unary(self, *args: Any, **kwargs: Any) -> None:
            pass

        def _annotate_conv2d_binary(self, *args: Any, **kwargs: Any) -> None:
            pass

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            super().annotate(model)
            spec = self.global_config.input_activation
            for node in model.graph.nodes:
                operands = node.args[:2]
                if node.target in ADDS and all(isinstance(a, torch.fx.Node) for a in operands):
                    node.meta[xiq.QUANT_ANNOTATION_KEY] = xiq._X86InductorQuantizationAnnotation(
                        input_qspec_map=dict.fromkeys(operands, spec), _annotated=True
                    )
            return model

    quantizer = Unfused()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    return quantizer


@torch.no_grad()
def unfused_int8_runner(prepared: nn.Module, x: Tensor) -> Callable[[Tensor], Tensor]:
    """As the ``int8`` engine (calibrated on ``x``, compiled on its shape), adds unfused."""
    quantize_pt2e, _ = torchao_pt2e()
    observed = quantize_pt2e.prepare_pt2e(_export(prepared, x).module(), unfused_quantizer())
    observed(x)
    net = QuantizedNet(_export(quantize_pt2e.convert_pt2e(observed), x), compile=True)
    net(x)
    return net


def clones_per_call(run: Callable[[Tensor], Tensor], x: Tensor) -> int:
    with torch.profiler.profile() as prof:
        run(x)
    return sum(e.count for e in prof.key_averages() if e.key == "aten::clone")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0, help="timing per engine, all rounds")
    ap.add_argument("--smoke", action="store_true", help="ResNet-20 at 32², batch 8")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(hardware(), flush=True)
    keep_freed_memory()  # as optimize_for_inference and benchmarks/inference.py run
    name, side, batch = ("resnet20", 32, 8) if args.smoke else ("resnet50_v1_5", 224, args.batch)
    base = randomize_batchnorm(create_model(name)).eval()
    prepared = prepare(base)
    x = torch.randn(batch, 3, side, side)
    with torch.no_grad():
        ref = base(x)
    runners = {
        "compile-bf16": build_runner("compile-bf16", prepared, x),
        "int8": build_runner("int8", prepared, x),
        "int8, adds unfused": unfused_int8_runner(prepared, x),
    }
    print(f"\n{name}, batch {batch}, {side}×{side}")
    for engine, run in runners.items():
        err = float((run(x).float() - ref).abs().max() / ref.abs().max())
        clones = clones_per_call(run, x)
        print(f"  {engine:<20} aten::clone per call {clones:>3}, max logit rel err {err:.3g}")
    rates = {
        k: (lambda run=run: batch / time_runner(run, x, min_seconds=args.seconds / args.rounds))
        for k, run in runners.items()
    }
    median, values = interleaved(rates, args.rounds)
    for engine, v in values.items():
        rounds = " ".join(f"{r:.1f}" for r in v)
        print(f"  {engine:<20} {median[engine]:8.1f} images/s  (rounds: {rounds})")
    bf16 = median["compile-bf16"]
    print(f"int8 / compile-bf16: {median['int8'] / bf16:.2f}×")
    print(f"int8, adds unfused / compile-bf16: {median['int8, adds unfused'] / bf16:.2f}×")


if __name__ == "__main__":
    main()
