"""Check that `resnetlab export` files load and compute what the checkpoint computes.

    python scripts/check_export.py CKPT FILE.onnx FILE.safetensors IMAGE [IMAGE ...]

The images go through the checkpoint's own eval preprocessing once; the same normalised
batch is fed to the PyTorch model, to the ONNX file in ONNX Runtime, and to a model rebuilt
from the safetensors file and its metadata alone (model name, options, classes). Prints the
largest difference in class probability against PyTorch and each file's top class per
image; exits 1 when a difference exceeds 1e-4 or a top class differs.
"""

import json
import sys

import onnxruntime as ort
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from resnetlab import create_model
from resnetlab.data.augment import eval_transform
from resnetlab.infer.predict import Predictor

ckpt, onnx_path, st_path, *images = sys.argv[1:]
p = Predictor.load(ckpt, device="cpu")
x = eval_transform(p.read_images(images), p.preprocess)
with torch.no_grad():
    want = p.model(x).softmax(1)

session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
(logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
got_onnx = torch.from_numpy(logits).softmax(1)

with safe_open(st_path, "pt") as f:
    st_meta = f.metadata()
classes = json.loads(st_meta["classes"])
options = json.loads(st_meta["model_options"])
net = create_model(st_meta["model"], **{**options, "num_classes": len(classes)})
net.load_state_dict(load_file(st_path))  # strict: every key and shape must fit
with torch.no_grad():
    got_st = net.eval()(x).softmax(1)

ok = True
for name, got, names in (
    ("onnx", got_onnx, json.loads(meta["resnetlab.classes"])),
    ("safetensors", got_st, classes),
):
    diff = float((got - want).abs().max())
    tops = [names[int(i)] for i in got.argmax(1)]
    same = tops == [p.classes[int(i)] for i in want.argmax(1)]
    ok &= diff <= 1e-4 and same
    verdict = "same" if same else "DIFFERENT"
    print(f"{name}: max |Δp| vs PyTorch {diff:.1e}; top classes {tops} ({verdict})")
sys.exit(0 if ok else 1)
