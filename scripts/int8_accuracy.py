"""int8 top-1 on real data, every int8 engine beside fp32: the numbers of docs/results/int8/.

    python scripts/int8_accuracy.py CKPT --pt2 FILE.pt2 [--data DATA] [--json OUT.json]

``FILE.pt2`` is what ``resnetlab quantize CKPT --data DATA -o FILE.pt2`` wrote: its top-1
(fp32 and our int8, measured by ``quantize`` on the whole test split) is read from the file.
This script measures, on the same split and with the same 512 calibration images (the same
seeded draw from train, :func:`~resnetlab.infer.int8_checkpoint.calibration_images`):

- ``onnxruntime-int8``: ONNX Runtime's static QDQ quantization (per-channel int8 weights,
  uint8 activations, min/max ranges), run by its CPU provider;
- ``openvino-int8``: NNCF's post-training quantization, run by OpenVINO's CPU plugin with
  f32 as the precision of what NNCF left unquantized (the plugin's default on a CPU with
  AVX-512 BF16 or AMX would be bf16; f32 keeps the figure about int8 alone);

each as top-1 (%) and top-1 agreement (%) with the fp32 model on every image. One thread,
so that it can run beside other work; the CPU model and its ISA flags go into the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from resnetlab.data.datasets import eval_split_batches
from resnetlab.infer.engines import onnxruntime_runner, openvino_model
from resnetlab.infer.folding import prepare
from resnetlab.infer.int8_checkpoint import calibration_images, evaluation_split
from resnetlab.infer.int8_file import load_quantized
from resnetlab.infer.predict import Predictor
from resnetlab.runtime.execution import cpu_has_fast_bf16, hardware

FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)


def cpu() -> dict[str, Any]:
    """The CPU model and which of :data:`FLAGS` /proc/cpuinfo lists."""
    model, flags = platform.processor(), set[str]()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    return {
        "model": model,
        "flags": {f: f in flags for f in FLAGS},
        "onednn_native_bf16": cpu_has_fast_bf16(),
        "hardware": hardware(),
    }


def openvino_int8(model: torch.nn.Module, calibration: Tensor) -> Callable[[Tensor], Tensor]:
    import openvino as ov

    converted = openvino_model(model, calibration, int8=True)
    converted.reshape([-1, *calibration.shape[1:]])  # calibrated on one batch: any batch now
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"}
    request = ov.Core().compile_model(converted, "CPU", config).create_infer_request()

    def run(x: Tensor) -> Tensor:
        out = request.infer({0: x.contiguous().numpy()})
        return torch.from_numpy(next(iter(out.values())).copy())

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--pt2", required=True, help="the file `resnetlab quantize` wrote")
    ap.add_argument("--data", help="dataset (default: the one it was trained on)")
    ap.add_argument("--calibration", type=int, default=512)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, meta = load_quantized(args.pt2)
    p = Predictor.load(args.checkpoint, device="cpu")
    cal = calibration_images(p, args.data, count=args.calibration)
    split, evaluated = evaluation_split(p, args.data)
    folded = prepare(p.model, channels_last=False)
    t = time.time()
    engines: dict[str, Callable[[Tensor], Tensor]] = {"fp32": folded}
    engines["onnxruntime-int8"] = onnxruntime_runner(folded, cal, threads=1, int8=True)
    engines["openvino-int8"] = openvino_int8(folded, cal)
    print(f"built the int8 engines in {time.time() - t:.0f} s", flush=True)
    logits: dict[str, list[Tensor]] = {k: [] for k in engines}
    labels = []
    with torch.no_grad():
        for x, y in eval_split_batches(
            evaluated, p.preprocess, batch_size=250, device=torch.device("cpu")
        ):
            labels.append(y)
            for name, run in engines.items():
                logits[name].append(run(x).float())
    y = torch.cat(labels)
    top = {k: torch.cat(v).argmax(1) for k, v in logits.items()}
    measured = meta["measured"]
    result: dict[str, Any] = {
        "model": meta["model_name"],
        "checkpoint": args.checkpoint,
        "split": split,
        "images": len(y),
        "calibration": len(cal),
        "cpu": cpu(),
        "torch": torch.__version__,
        "top1": {"fp32": 100 * float((top["fp32"] == y).float().mean())},
        "agreement": {},
        "pt2e_int8 (resnetlab quantize)": {
            "top1_fp32": measured["top1_fp32"],
            "top1_int8": measured["top1_int8"],
            "agreement": measured["agreement"],
            "layers_not_int8": [e for e in meta["layers"] if e["dtype"] != "int8"],
        },
    }
    for name in ("onnxruntime-int8", "openvino-int8"):
        result["top1"][name] = 100 * float((top[name] == y).float().mean())
        result["agreement"][name] = 100 * float((top[name] == top["fp32"]).float().mean())
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
