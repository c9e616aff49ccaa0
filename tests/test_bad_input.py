"""Bad inputs across the command line: each one gets exactly one line on stderr,
``resnetlab <command>: error: …``, a non-zero exit (2) and no traceback, and leaves every
file that existed before untouched. docs/bad-input.md is this table, with the messages.

Set ``RESNETLAB_BAD_INPUT_TABLE=FILE`` to append each case's real message to FILE (JSON
lines) when regenerating the docs table.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from conftest import cli, copy_run, http_server, tiny_train
from resnetlab.cli import main
from resnetlab.interop import weights as catalogue
from resnetlab.interop.weights import get_weights
from resnetlab.models import create_model

Capture = pytest.CaptureFixture[str]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# A one-epoch ResNet-20 on 5 images per class of the shipped sample: a real checkpoint.
TRAIN = tuple(tiny_train())


@dataclass(frozen=True)
class Case:
    id: str
    what: str  # the bad input, for the docs table
    argv: tuple[str, ...]  # {name} is replaced by a path of the `files` fixture
    needle: str  # in the error line
    keep: str = ""  # a file named in the case that must stay byte-identical
    code: int = 2
    needs_non_root: bool = False  # permissions do not bind root
    hide: tuple[str, ...] = ()  # modules made unimportable, as if not installed
    env: tuple[tuple[str, str | None], ...] = ()  # environment for the case (None: unset)


def case(id: str, what: str, *argv: str, needle: str, keep: str = "", **kw: Any) -> Case:
    return Case(id, what, argv, needle, keep, **kw)


NO_CACHE_ENV = (("RESNETLAB_CACHE", None), ("XDG_CACHE_HOME", None))


# hand-laid (the marker at the closing bracket keeps the formatter off): one case per entry,
# its argv wrapped with each flag beside its value; the formatter would put every word of
# every argv on a line of its own and turn this table's 390 lines into 1,570.
CASES = [
    # ------------------------------------------------------------ models and analysis
    case("summary-unknown-model", "a misspelt model name", "summary", "resnt50",
         needle="did you mean resnet50"),
    case("summary-input-too-small", "an input too small for VGG's five poolings (16×16)",
         "summary", "vgg16", "--input-size", "1", "3", "16", "16", needle="does not fit"),
    case("summary-input-3-numbers", "an input shape with 3 numbers, not N C H W", "summary",
         "resnet20", "--input-size", "1", "3", "32", needle="takes four numbers, N C H W"),
    case("summary-wrong-channels", "an input with 4 channels for a 3-channel model", "summary",
         "resnet50", "--input-size", "2", "4", "224", "224", needle="does not fit"),
    case("summary-set-no-equals", "`--set` without `=`", "summary", "resnet20", "--set",
         "kernel_size", needle="KEY=VALUE"),
    case("summary-even-kernel", "an even middle kernel size", "summary", "resnet20", "--set",
         "kernel_size=4", needle="odd"),
    case("summary-missing-folder", "`-o` into a folder that does not exist", "summary",
         "resnet20", "-o", "{files}/missing/table.txt", needle="does not exist"),
    case("compare-unknown-model", "one unknown model among several", "compare", "resnet20",
         "resnet21", needle="unknown model 'resnet21'"),
    case("params-unknown-option", "a spec field that does not exist", "params", "resnet20",
         "--set", "colour=red", needle="has no option 'colour'"),
    case("plot-jpg", "a chart file that is neither .png nor .svg", "plot", "resnet20", "-o",
         "{files}/chart.jpg", needle=".png or .svg"),
    case("models-no-match", "a pattern no model matches", "models", "nothing*",
         needle="no model matches"),
    # ------------------------------------------------------------ train: recipe and options
    case("train-unknown-model", "an unknown model", *TRAIN, "--model", "resnet21",
         "--epochs", "1", "--out", "{out}", needle="unknown model 'resnet21'"),
    case("train-zero-epochs", "zero epochs", *TRAIN, "--epochs", "0",
         needle="positive integer"),
    case("train-negative-epochs", "negative epochs", *TRAIN, "--epochs", "-3",
         needle="positive integer"),
    case("train-negative-lr", "a negative learning rate", *TRAIN, "--epochs", "1", "--lr",
         "-0.1", needle="optim.lr must be a positive number"),
    case("train-lr-word", "a learning rate that is not a number", *TRAIN, "--epochs", "1",
         "--set", "optim.lr=fast", needle="optim.lr must be a number"),
    case("train-fractional-epochs", "a fractional number of epochs in --set", *TRAIN,
         "--set", "run.epochs=2.5", needle="run.epochs must be an integer"),
    case("train-momentum-word", "a word where a number belongs", *TRAIN, "--epochs", "1",
         "--set", "optim.momentum=high", needle="optim.momentum must be a number"),
    case("train-seed-word", "a seed that is not an integer", *TRAIN, "--epochs", "1",
         "--set", "run.seed=abc", needle="run.seed must be an integer"),
    case("train-milestones-words", "milestones that are not integers", *TRAIN, "--epochs",
         "1", "--set", "schedule.milestones=[a, b]", needle="schedule.milestones"),
    case("train-precision", "an unknown precision in --set", *TRAIN, "--epochs", "1",
         "--set", "run.precision=fp64", needle="run.precision must be one of"),
    case("train-val-fraction", "a validation fraction of 1", *TRAIN, "--epochs", "1",
         "--val-fraction", "1", needle="data.val_fraction must be in (0, 1)"),
    case("train-time-limit", "a negative time limit", *TRAIN, "--time-limit", "-5",
         needle="run.time_limit_min must be a positive"),
    case("train-set-no-equals", "`--set` without `=`", *TRAIN, "--set", "optim.lr",
         needle="section.key=value"),
    case("train-unknown-section", "an unknown section in --set", *TRAIN, "--epochs", "1",
         "--set", "optimiser.lr=0.1", needle="unknown section 'optimiser'"),
    case("train-unknown-key", "a misspelt key in --set", *TRAIN, "--epochs", "1", "--set",
         "optim.lrr=0.1", needle="unknown key optim.lrr"),
    case("train-unknown-recipe", "an unknown recipe name", "train", "--recipe", "fastest",
         needle="unknown recipe 'fastest'"),
    case("train-recipe-malformed", "a recipe file that is not valid YAML", "train",
         "--recipe", "{bad_yaml}", needle="but got ':' (line 2, column 6)"),
    case("train-recipe-binary", "a recipe file that is not text", "train", "--recipe",
         "{binary_yaml}", needle="not UTF-8 text"),
    case("train-recipe-list", "a recipe file that is a list, not a mapping", "train",
         "--recipe", "{list_yaml}", needle="must be a mapping of sections"),
    case("train-recipe-wrong-key", "a recipe with a misspelt key", "train", "--recipe",
         "{wrong_key_yaml}", needle="unknown key optim.lrr"),
    case("train-recipe-unknown-section", "a recipe with an unknown section", "train",
         "--recipe", "{section_yaml}", needle="unknown recipe section 'optimizer'"),
    case("train-recipe-section-scalar", "a recipe section that is a number", "train",
         "--recipe", "{scalar_section_yaml}", needle="section 'optim' must be a mapping"),
    case("train-no-length", "a recipe that says how long to train nowhere", "train",
         "--recipe", "{no_length_yaml}", needle="give run.epochs"),
    case("train-device", "an unknown device", *TRAIN, "--epochs", "1", "--device", "tpu",
         "--out", "{out}", needle="unknown device 'tpu'"),
    # ------------------------------------------------------------ train: data and files
    case("train-missing-data", "a data folder that does not exist", *TRAIN, "--epochs", "1",
         "--data", "{files}/nowhere", needle="no dataset"),
    case("train-empty-folder", "an empty data folder", *TRAIN, "--epochs", "1", "--data",
         "{empty}", needle="no images found"),
    case("train-one-class", "a folder with one class", *TRAIN, "--epochs", "1", "--data",
         "{one_class}", needle="need at least two classes"),
    case("train-corrupt-images", "a folder whose images are all corrupt", *TRAIN,
         "--epochs", "1", "--data", "{corrupt_images}", "--out", "{out}",
         needle="none of the first"),
    case("train-text-as-data", "a text file given as data", *TRAIN, "--epochs", "1",
         "--data", "{notes}", needle="no such folder or archive"),
    case("train-corrupt-archive", "a .tar.gz that is not an archive", *TRAIN, "--epochs",
         "1", "--data", "{bad_tar}", needle="cannot read archive"),
    case("train-out-is-file", "`--out` naming an existing file", *TRAIN, "--epochs", "1",
         "--out", "{notes}", needle="not a folder", keep="notes"),
    case("train-out-readonly", "`--out` in a read-only folder", *TRAIN, "--epochs", "1",
         "--out", "{readonly}/runs", needle="permission denied", needs_non_root=True),
    case("train-existing-run", "a run folder that already holds a run", *TRAIN, "--epochs",
         "1", "--out", "{files}", "--name", "run", needle="already holds a run",
         keep="ckpt"),
    case("train-pretrained-text", "`--pretrained` with a text file", *TRAIN, "--epochs", "1",
         "--pretrained", "{notes}", "--out", "{out}", needle="not a PyTorch weights file"),
    case("train-pretrained-other-model", "`--pretrained` from another architecture", *TRAIN,
         "--epochs", "1", "--model", "vgg11_bn", "--pretrained", "{ckpt}", "--out", "{out}",
         needle="not a vgg11_bn: only 0 of 62 tensors match; use --model resnet20"),
    case("train-pretrained-missing", "`--pretrained` with a file that does not exist",
         *TRAIN, "--epochs", "1", "--pretrained", "{files}/none.pt", "--out", "{out}",
         needle="none.pt"),
    case("train-resume-no-last", "`--resume` on a folder without last.pt", "train",
         "--resume", "{empty}", needle="checkpoint not found"),
    case("train-resume-corrupt", "`--resume` on a run whose last.pt is random bytes",
         "train", "--resume", "{noise_run}", needle="cannot read checkpoint", keep="noise"),
    case("train-resume-new-lr", "`--resume` with a different learning rate", "train",
         "--resume", "{run}", "--lr", "0.5", needle="cannot change", keep="ckpt"),
    # ------------------------------------------------------------ eval / predict / export
    case("eval-text", "`eval` on a text file", "eval", "{notes}",
         needle="cannot read checkpoint"),
    case("eval-foreign-torch", "`eval` on a torch file that is not a resnetlab checkpoint",
         "eval", "{foreign}", needle="give --model NAME"),
    case("eval-other-classes", "`eval` of a 10-class checkpoint on 3-class data", "eval",
         "{ckpt}", "--data", "{three_classes}", needle="differ from the checkpoint's"),
    case("eval-out-is-file", "`eval --out` naming an existing file", "eval", "{ckpt}",
         "--out", "{notes}", needle="not a folder", keep="notes"),
    case("predict-text", "`predict` on a text file", "predict", "{ckpt}", "{notes}",
         needle="notes.txt"),
    case("predict-missing-image", "`predict` on an image that does not exist", "predict",
         "{ckpt}", "{files}/none.png", needle="none.png"),
    case("predict-folder", "`predict` on a folder", "predict", "{ckpt}", "{empty}",
         needle="empty"),
    case("predict-unreadable", "`predict` on an unreadable image", "predict", "{ckpt}",
         "{unreadable}", needle="Permission denied", needs_non_root=True),
    case("predict-non-checkpoint", "`predict` with an image as the checkpoint", "predict",
         "{image}", "{image}", needle="cannot read checkpoint"),
    case("export-corrupt-keeps-file", "`export` of a corrupt checkpoint onto an existing file",
         "export", "{noise}", "-o", "{existing_onnx}", needle="cannot read checkpoint",
         keep="existing_onnx"),
    case("export-suffix", "`export -o` with an unknown suffix", "export", "{ckpt}", "-o",
         "{files}/model.bin", needle="--format"),
    case("export-missing-folder", "`export -o` into a folder that does not exist", "export",
         "{ckpt}", "-o", "{files}/missing/model.onnx", needle="does not exist"),
    case("export-onto-folder", "`export -o` naming a folder", "export", "{ckpt}", "-o",
         "{dir_safetensors}", needle="it is a folder"),
    case("export-readonly", "`export -o` in a read-only folder", "export", "{ckpt}", "-o",
         "{readonly}/model.onnx", needle="permission denied", needs_non_root=True),
    case("bench-engine", "an unknown inference engine", "bench", "resnet20", "--engines",
         "warp", needle="unknown engine 'warp'"),
    case("bench-corrupt", "`bench` on a corrupt checkpoint", "bench", "{half}",
         needle="cannot read checkpoint"),
    # ------------------------------------------------------------ reproduce
    case("reproduce-depth-21", "a depth that is not 6n+2", "reproduce", "degradation",
         "--depths", "20", "21", "--out", "{out}", needle="depth 21 is not 6n+2"),
    case("reproduce-paper-and-iterations", "`--paper` with `--iterations`", "reproduce",
         "cifar-table", "--paper", "--iterations", "10", "--out", "{out}",
         needle="not both"),
    case("reproduce-unknown", "an unknown experiment", "reproduce", "fig9",
         needle="invalid choice"),
    # ------------------------------------------------------------ issue 17: silently wrong
    case("train-momentum-nan", "a NaN momentum (`.nan` in YAML)", *TRAIN, "--epochs", "1",
         "--set", "optim.momentum=.nan", "--out", "{out}",
         needle="optim.momentum must be a finite number, got nan"),
    case("train-weight-decay-inf", "an infinite weight decay", *TRAIN, "--epochs", "1",
         "--set", "optim.weight_decay=.inf", "--out", "{out}",
         needle="optim.weight_decay must be a finite number, got inf"),
    case("train-gamma-nan-string", "a NaN schedule factor spelt as a word", *TRAIN,
         "--epochs", "1", "--set", "schedule.gamma=nan", "--out", "{out}",
         needle="schedule.gamma must be a finite number"),
    case("train-resume-new-seed", "`--resume` with a different seed (it would re-split the "
         "data)", "train", "--resume", "{run}", "--seed", "5", needle="run.seed cannot change",
         keep="ckpt"),
    case("train-resume-new-name", "`--resume` with a different `--name`", "train",
         "--resume", "{run}", "--name", "other", needle="run.name cannot change",
         keep="ckpt"),
    case("train-resume-new-data", "`--resume` with other data", "train", "--resume", "{run}",
         "--data", "{three_classes}", needle="data.source cannot change", keep="ckpt"),
    case("train-resume-new-model", "`--resume` with another model", "train", "--resume",
         "{run}", "--model", "resnet32", needle="model.name cannot change", keep="ckpt"),
    case("train-resume-new-split", "`--resume` with another validation fraction", "train",
         "--resume", "{run}", "--val-fraction", "0.2", needle="data.val_fraction cannot change",
         keep="ckpt"),
    case("train-dead-run", "a fresh run into the folder of a run killed before its first "
         "checkpoint", *TRAIN, "--epochs", "1", "--out", "{files}", "--name", "dead_run",
         needle="saved no checkpoint", keep="dead_metrics"),
    # ------------------------------------------------------------ issue 17: blow-ups
    case("summary-width-inf", "a width multiplier that overflows to infinity", "summary",
         "resnet20", "--set", "width=1e999", needle="width must be a positive finite number"),
    case("summary-width-huge", "a width multiplier of 5000 (320,000-channel layers)",
         "summary", "resnet20", "--set", "width=5000", needle="at most 65,536 are built"),
    case("summary-dropout-word", "a dropout that is a word", "summary", "resnet20", "--set",
         "dropout=abc", needle="dropout must be a number in [0, 1), got 'abc'"),
    case("summary-residual-word", "`residual=no` (a true string: it built a ResNet)",
         "summary", "resnet20", "--set", "residual=no",
         needle="residual must be true or false, got 'no'"),
    case("train-dropout-word", "a dropout that is a word in a training run", *TRAIN,
         "--epochs", "1", "--set", "model.options.dropout=abc", "--out", "{out}",
         needle="dropout must be a number in [0, 1)"),
    case("params-three-million-blocks", "three million blocks in a stage (it hung)",
         "params", "resnet20", "--set", "layers=[3000000,3,3]", needle="at most 2,000 are built"),
    case("train-image-size-huge", "an image size needing 1.2 TB per batch", *TRAIN,
         "--epochs", "1", "--image-size", "100000", "--out", "{out}", needle="needs about"),
    case("bench-input-too-small", "`bench` on an input too small for VGG's poolings", "bench",
         "vgg16", "--image-size", "16", "--engines", "eager", needle="does not fit this model"),
    case("bench-batch-huge", "`bench` on a batch that cannot fit in memory", "bench",
         "resnet20", "--batch-size", "10000000", "--engines", "eager", needle="needs about"),
    case("train-recipe-alias-bomb", "a recipe that is a YAML alias bomb (10⁹ values)",
         "train", "--recipe", "{bomb_yaml}", needle="expands to more than 10,000 values"),
    case("reproduce-span-nan", "a NaN landscape span", "reproduce", "landscape", "--span",
         "nan", "--out", "{out}", needle="--span must be a positive finite number"),
    case("reproduce-span-inf", "an infinite landscape span", "reproduce", "landscape",
         "--span", "inf", "--out", "{out}", needle="--span must be a positive finite number"),
    # ------------------------------------------------------------ published weights
    case("eval-unknown-weights", "an unknown catalogue name", "eval", "resnet50.tv3_in1k",
         needle="unknown weights 'resnet50.tv3_in1k'; did you mean"),
    case("train-pretrained-unknown-weights", "`--pretrained` with an unknown catalogue name",
         *TRAIN, "--epochs", "1", "--pretrained", "resnet20.akamaster_cifar100", "--out",
         "{out}", needle="unknown weights 'resnet20.akamaster_cifar100'"),
    case("eval-hash-mismatch", "a catalogue download whose SHA-256 is not the published one "
         "(local server)", "eval", "resnet20.badhash", needle="refused and deleted"),
    case("eval-published-no-model", "a published file the catalogue does not know, without "
         "`--model`", "eval", "{aka_legacy}", needle="give --model NAME"),
    case("eval-published-no-layout", "a foreign file whose keys do not say their layout",
         "eval", "{foreign}", "--model", "resnet20", needle="give --layout"),
    case("eval-legacy-pickled-class", "a legacy (pre-1.6) file with a pickled class in it",
         "eval", "{aka_evil}", "--model", "resnet20", needle="refused, it would run code"),
    # ------------------------------------------------------------ int8: quantize and .pt2 files
    case("quantize-calibration-zero", "`quantize --calibration 0` (no image to set a range)",
         "quantize", "{ckpt}", "--calibration", "0",
         needle="--calibration: expected a positive integer, got '0'"),
    case("quantize-calibration-negative", "`quantize --calibration -3`", "quantize", "{ckpt}",
         "--calibration", "-3", needle="expected a positive integer, got '-3'"),
    case("quantize-max-error-zero", "`quantize --max-layer-error 0` (every layer kept)",
         "quantize", "{ckpt}", "--max-layer-error", "0",
         needle="--max-layer-error must be positive, got 0.0"),
    case("quantize-max-error-nan", "`quantize --max-layer-error nan` (no comparison is true)",
         "quantize", "{ckpt}", "--max-layer-error", "nan",
         needle="--max-layer-error must be positive, got nan"),
    case("quantize-output-not-pt2", "`quantize -o` a file that is not .pt2", "quantize",
         "{ckpt}", "-o", "{files}/model.onnx", needle="the int8 file is a .pt2 archive"),
    case("quantize-not-a-checkpoint", "`quantize` on a text file, over an existing .pt2",
         "quantize", "{notes}", "--data", "sample", "-o", "{pt2_stub}",
         needle="cannot read checkpoint", keep="pt2_stub"),
    case("quantize-a-pt2", "`quantize` on an int8 .pt2 (quantized twice)", "quantize",
         "{pt2_stub}", "--data", "sample", "-o", "{files}/twice.pt2",
         needle="is an int8 program already; quantize the checkpoint it came from"),
    case("quantize-missing-folder", "`quantize -o` into a folder that does not exist",
         "quantize", "{ckpt}", "--data", "sample", "-o", "{files}/missing/r20.pt2",
         needle="does not exist"),
    case("eval-pt2-truncated", "a truncated .pt2 (half of one)", "eval", "{pt2_half}",
         "--data", "sample", needle="not a readable int8 program"),
    case("predict-pt2-truncated", "`predict` with a truncated .pt2", "predict", "{pt2_half}",
         "{image}", needle="not a readable int8 program"),
    case("eval-pt2-not-ours", "a .pt2 from `torch.export.save` that is not resnetlab's",
         "eval", "{pt2_foreign}", "--data", "sample", needle="not a resnetlab int8 file"),
    case("bench-pt2-not-ours", "`bench` on a .pt2 that is not resnetlab's", "bench",
         "{pt2_foreign}", needle="not a resnetlab int8 file"),
    case("eval-pt2-newer-format", "a .pt2 of a later int8 format (resnetlab-int8/2)", "eval",
         "{pt2_newer}", "--data", "sample",
         needle="of format resnetlab-int8/2; this version reads resnetlab-int8/1"),
    case("bench-pt2-no-metadata", "a .pt2 with resnetlab's format tag and nothing else",
         "bench", "{pt2_stub}", needle="its metadata is incomplete"),
    case("train-pretrained-no-published-hash", "`--pretrained` with catalogue weights that "
         "have no published SHA-256 (timm's), not put in place by hand", *TRAIN, "--epochs",
         "1", "--model", "resnet18", "--pretrained", "resnet18.a1_in1k", "--out", "{out}",
         needle="has no published SHA-256 to check a download against, so it is not downloaded"),
    # ------------------------------------------------------------ fine-tuning and explaining
    case("train-freeze-until-unknown-stage", "`--freeze-until` a stage the model does not "
         "have", *TRAIN, "--epochs", "1", "--freeze-until", "layer4", "--out", "{out}",
         needle="resnet20 has"),
    case("predict-explain-no-captum", "`predict --explain` without captum installed", "predict",
         "{ckpt}", "{image}", "--explain", "{out}/cams", needle="explanations need captum",
         hide=("captum", "captum.attr")),
    # ------------------------------------------------------------ issue 17: rough edges
    case("train-seed-overflow", "a seed beyond 64 bits (it said \"Overflow when unpacking long "
         "long\")", *TRAIN, "--epochs", "1", "--seed", "99999999999999999999999", "--out",
         "{out}", needle="run.seed (--seed) must be an integer from 0 to 4,294,967,295"),
    case("train-seed-negative", "a negative seed", *TRAIN, "--epochs", "1", "--seed", "-1",
         "--out", "{out}", needle="run.seed (--seed) must be an integer from 0"),
    case("train-seed-33-bits", "a seed of 2³² in --set", *TRAIN, "--epochs", "1", "--set",
         "run.seed=4294967296", "--out", "{out}", needle="run.seed (--seed) must be"),
    case("train-padding-negative", "a negative pad-and-crop padding (it trained)", *TRAIN,
         "--epochs", "1", "--set", "data.padding=-3", "--out", "{out}",
         needle="data.padding must be a number of pixels ≥ 0, got -3"),
    case("train-padding-fraction", "a fractional padding", *TRAIN, "--epochs", "1", "--set",
         "data.padding=1.5", "--out", "{out}", needle="data.padding must be an integer"),
    case("train-padding-larger-than-image", "a padding larger than the 32-pixel images",
         *TRAIN, "--epochs", "1", "--set", "data.padding=100", "--out", "{out}",
         needle="data.padding 100 is larger than the 32-pixel images"),
    case("train-name-absolute", "an absolute `--name` (it wrote outside `--out`)", *TRAIN,
         "--epochs", "1", "--out", "{out}", "--name", "{files}/escaped",
         needle="run.name (--name) must be one folder name inside run.out_dir (--out)"),
    case("train-name-dotdot", "a `--name` climbing out of `--out` with `..`", *TRAIN,
         "--epochs", "1", "--out", "{out}", "--name", "../../escaped",
         needle="run.name (--name) must be one folder name"),
    case("train-name-parent", "`--name ..` (the folder above `--out`)", *TRAIN, "--epochs",
         "1", "--out", "{out}", "--name", "..", needle="run.name (--name) must be one folder"),
    case("train-name-nested", "a `--name` with a slash, in --set", *TRAIN, "--epochs", "1",
         "--out", "{out}", "--set", "run.name=a/b", needle="got 'a/b'"),
    case("train-name-empty", "an empty `--name`", *TRAIN, "--epochs", "1", "--out", "{out}",
         "--name", "", needle="run.name (--name) must be one folder name"),
    case("train-recipe-duplicate-key", "a recipe giving optim.lr twice (the last won silently)",
         "train", "--recipe", "{dup_key_yaml}", needle="duplicate key 'lr' (YAML would keep "
         "the last) (line 3, column 3)"),
    case("train-recipe-duplicate-section", "a recipe with two `run:` sections", "train",
         "--recipe", "{dup_section_yaml}", needle="duplicate key 'run'"),
    case("train-set-duplicate-key", "a --set mapping giving one option twice", *TRAIN,
         "--epochs", "1", "--set", "model.options={{dropout: 0.1, dropout: 0.2}}",
         needle="duplicate key 'dropout'"),
    case("train-resume-edited-config", "`--resume` of a run whose config.yaml was edited by "
         "hand (the edit was ignored, then overwritten)", "train", "--resume", "{edited_run}",
         needle="config.yaml was edited: optim.lr is 0.5 there, 0.1 in the run's checkpoint",
         keep="edited_config"),
    case("train-resume-edited-epochs", "`--resume` after editing run.epochs in config.yaml",
         "train", "--resume", "{edited_epochs_run}", needle="run.epochs is 7 there, 1 in the",
         keep="edited_epochs_config"),
    case("train-resume-garbled-config", "`--resume` of a run whose config.yaml is not YAML",
         "train", "--resume", "{garbled_run}", needle="cannot read", keep="garbled_config"),
    case("train-resume-from-best", "`--resume RUN/best.pt` (it overwrote the later last.pt)",
         "train", "--resume", "{branch_run}/best.pt", needle="would overwrite",
         keep="branch_last"),
    case("train-resume-fewer-epochs", "`--resume --epochs 1` of a run that has trained 3 (it "
         "rewrote config.yaml)", "train", "--resume", "{three_run}", "--epochs", "1",
         needle="it has trained 3 epochs already (give --epochs 3 or more", keep="three_config"),
    case("train-resume-fewer-iterations", "`--resume --iterations 2` of a run past step 2",
         "train", "--resume", "{three_run}", "--iterations", "2",
         needle="run.iterations 2: it has trained 15 already", keep="three_config"),
    case("train-out-is-run", "`--out` naming a run folder (a new run nested inside it)",
         *TRAIN, "--epochs", "1", "--out", "{run}", needle="is a run folder (it holds last.pt)",
         keep="ckpt"),
    case("train-home-empty", "`HOME=\"\"` with no cache variable (the cache went to /.cache)",
         *TRAIN, "--epochs", "1", "--data", "{three_classes}", "--out", "{out}",
         env=(*NO_CACHE_ENV, ("HOME", "")), needle="no cache folder: HOME is ''"),
    case("train-home-relative", "a relative `HOME`, and a relative XDG_CACHE_HOME (ignored)",
         *TRAIN, "--epochs", "1", "--data", "{three_classes}", "--out", "{out}",
         env=(("RESNETLAB_CACHE", None), ("XDG_CACHE_HOME", "cache"), ("HOME", "home")),
         needle="no cache folder: HOME is 'home'"),
    case("tour-out-file", "`tour --out` naming a file (it failed with errno after the work)",
         "tour", "--out", "{notes}", needle="notes.txt is not a folder", keep="notes"),
    case("tour-out-readonly", "`tour --out` in a read-only folder", "tour", "--out",
         "{readonly}/charts", needle="permission denied", needs_non_root=True),
    case("reproduce-out-file", "`reproduce --out` naming a file", "reproduce", "degradation",
         "--out", "{notes}", needle="is not a folder", keep="notes"),
    case("reproduce-out-readonly", "`reproduce --out` in a read-only folder", "reproduce",
         "landscape", "--out", "{readonly}/x", needle="permission denied", needs_non_root=True),
    case("export-format-contradicts-suffix", "`export --format onnx -o x.safetensors` (ONNX "
         "bytes under a safetensors name)", "export", "{ckpt}", "--format", "onnx", "-o",
         "{files}/x.safetensors", needle="--format onnx but"),
    case("export-format-contradicts-onnx", "`export --format safetensors -o x.onnx`", "export",
         "{ckpt}", "--format", "safetensors", "-o", "{files}/x.onnx",
         needle="name the file .safetensors"),
    case("bench-run-folder", "`bench RUN_FOLDER` (it said \"unknown model\")", "bench", "{run}",
         needle="is a folder, not a checkpoint; give one of its checkpoints"),
    case("eval-run-folder", "`eval RUN_FOLDER`", "eval", "{run}",
         needle="is a folder, not a checkpoint"),
    case("predict-run-folder", "`predict RUN_FOLDER IMAGE`", "predict", "{run}", "{image}",
         needle="is a folder, not a checkpoint"),
    case("reproduce-depth-2", "`reproduce degradation --depths 2` (it said \"unknown model "
         "'plain2'\")", "reproduce", "degradation", "--depths", "2", "--out", "{out}",
         needle="depth 2 is not one degradation can train: CIFAR depths are 6n+2"),
    case("reproduce-depth-26", "a 6n+2 depth with no registered model", "reproduce",
         "degradation", "--depths", "20", "26", "--out", "{out}",
         needle="registered ones are 20, 32, 44, 56, 110"),
    case("reproduce-seeds-repeated", "`--seeds 0 0` (one run counted twice)", "reproduce",
         "cifar-table", "--seeds", "0", "0", "--out", "{out}",
         needle="--seeds lists 0 more than once"),
    case("reproduce-depths-repeated", "`--depths 20 20`", "reproduce", "degradation",
         "--depths", "20", "20", "--out", "{out}", needle="--depths lists 20 more than once"),
    case("reproduce-grid-even", "an even landscape grid (no point at the trained weights)",
         "reproduce", "landscape", "--grid", "4", "--out", "{out}",
         needle="--grid must be an odd number of points from 3 to 51"),
    case("reproduce-grid-one", "a one-point landscape grid", "reproduce", "landscape",
         "--grid", "1", "--out", "{out}", needle="got 1"),
    case("reproduce-grid-other-experiment", "`--grid` given to an experiment without one (it "
         "was ignored)", "reproduce", "degradation", "--grid", "5", "--out", "{out}",
         needle="--grid is the landscape's; degradation has no grid"),
    # ------------------------------------------------------------ issue 17: found by the fuzz test
    case("params-kernel-huge", "a 5,341-wide kernel (15 s to count)", "params", "resnet18",
         "--set", "kernel_size=5341", needle="kernel_size must be at most 31, got 5,341"),
    case("params-in-channels-huge", "ten million input channels", "params", "resnet20",
         "--set", "in_channels=10000000", needle="in_channels must be at most 65,536"),
    case("params-classes-huge", "ten billion classes", "params", "resnet20", "--set",
         "num_classes=10000000000", needle="num_classes must be at most 1,000,000"),
    case("params-widths-number", "a number where the list of stage widths belongs (a "
         "TypeError traceback)", "params", "resnet20", "--set", "widths=1e999",
         needle="widths must be a list of positive integers, got inf"),
    case("train-recipe-empty-section", "a recipe with an empty `run:` section (a TypeError "
         "traceback)", "train", "--recipe", "{empty_section_yaml}", "--out", "{out}",
         needle="give run.epochs"),
    case("train-recipe-options-scalar", "a recipe whose model.options is a number, with "
         "`--set model.options.…`", "train", "--recipe", "{options_scalar_yaml}", "--set",
         "model.options.dropout=0.1", needle="model.options must be a mapping, got 5"),
    case("predict-onnx-not-a-model", "an .onnx file that is not a model (predict reads our "
         "exports)", "predict", "{existing_onnx}", "{image}", needle="not a readable ONNX model",
         keep="existing_onnx"),
    case("eval-export-misfit", "an exported .safetensors whose metadata names another model",
         "eval", "{misfit_safetensors}", needle="its weights do not fit resnet56",
         keep="misfit_safetensors"),
    case("bench-onnx", "`bench` of an .onnx file (it needs the PyTorch model; an internal "
         "error)", "bench", "{existing_onnx}", needle="an ONNX file runs in ONNX Runtime only"),
    case("quantize-onnx", "`quantize` of an .onnx file (an internal error)", "quantize",
         "{existing_onnx}", "--data", "sample", "-o", "{files}/q.pt2",
         needle="an ONNX file runs in ONNX Runtime only"),
    case("export-onnx", "`export` of an .onnx file", "export", "{existing_onnx}", "-o",
         "{files}/again.safetensors", needle="an ONNX file runs in ONNX Runtime only"),
    case("train-minutes-step", "a time budget for the paper's step schedule", *TRAIN,
         "--minutes", "5", "--out", "{out}", needle="sizes a warmup-linear or cosine schedule"),
    case("train-minutes-negative", "a negative time budget", *TRAIN, "--minutes", "-1",
         needle="run.budget_min must be a positive"),
    case("train-interpolation", "an unknown resize filter", *TRAIN,
         "--set", "data.interpolation=nearest", needle="data.interpolation must be one of"),
    # ------------------------------------------------------------ issue 31's messages
    case("predict-other-architecture", "a published file of another architecture (a ResNet-18 "
         "given as `--model resnet50`, torchvision's name of `resnet50_v1_5`)", "predict",
         "{r18}", "{photo}", "--model", "resnet50", needle="holds a resnet18 (1000 classes), "
         "not a resnet50_v1_5: only 98 of 320 tensors match; use --model resnet18", keep="r18"),
    case("eval-split-test-on-train-val", "`--split test` on a train/val folder (the PyTorch "
         "transfer-learning tutorial's layout; with no `--split`, `eval` measures val and says "
         "so)", "eval", "{ckpt}", "--data", "{train_val}", "--split", "test",
         needle="has no 'test' split; it has val, train (--split val)"),
    case("train-pretrained-other-architecture", "`train --pretrained` holding another "
         "architecture (a ResNet-18 file for the `paper-cifar` ResNet-20)", *TRAIN, "--epochs",
         "1", "--pretrained", "{r18}", "--out", "{out}",
         needle="holds a resnet18 (1000 classes), not a resnet20: only ", keep="r18"),
    case("train-in-channels-contradicted", "`in_channels` the data contradicts (it was "
         "accepted, and written to `config.yaml`, while the network was built with 3)", *TRAIN,
         "--epochs", "1", "--set", "model.options.in_channels=1", "--out", "{out}",
         needle="model.options.in_channels=1, but the data has 3 channels (images are decoded "
         "as RGB); leave in_channels out (it is taken from the data)"),
    case("train-num-classes-contradicted", "`num_classes` the data contradicts", *TRAIN,
         "--epochs", "1", "--set", "model.options.num_classes=7", "--out", "{out}",
         needle="model.options.num_classes=7, but the data has 10 classes; leave num_classes "
         "out"),
    # ------------------------------------------------------------ issue 33: memory
    case("train-eval-batch-memory", "validation at `data.eval_batch_size` that cannot fit "
         "(the training step can)", *TRAIN, "--epochs", "1", "--limit-per-class", "50",
         "--batch-size", "2", "--out", "{out}", env=(("RESNETLAB_MEMORY_LIMIT", "15M"),),
         needle="validation on a batch of 100×3×32×32 needs about"),
    case("eval-one-image-memory", "`eval` where not even one image fits in memory", "eval",
         "{ckpt}", env=(("RESNETLAB_MEMORY_LIMIT", "1K"),), needle="not even one image fits"),
    case("memory-limit-word", "a `RESNETLAB_MEMORY_LIMIT` that is not a size", "eval",
         "{ckpt}", env=(("RESNETLAB_MEMORY_LIMIT", "lots"),), needle="is not a size"),
    case("reproduce-previous-dev-zero", "`reproduce --previous /dev/zero` (it read until "
         "memory ran out)", "reproduce", "cifar-table", "--previous", "/dev/zero", "--out",
         "{out}", needle="/dev/zero: not a report's results.json (over 64 MiB, not read"),
    case("predict-export-huge-image", "an exported .safetensors whose metadata asks for "
         "30,000-pixel images", "predict", "{huge_safetensors}", "{image}",
         needle="its input size 30000 is outside 1–4096 pixels", keep="huge_safetensors"),
]  # fmt: skip


# ---------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_thread")


def _png(path: Path, colour: tuple[int, int, int], size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


class _Args:
    """A class of the test's own, as files of akamaster's era pickled argparse.Namespace."""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _published_files(root: Path, f: dict[str, Path], m: pytest.MonkeyPatch) -> Iterator[None]:
    """akamaster-style legacy files, and a local server for ``resnet20.badhash``, a
    catalogue entry whose published hash the served file does not have."""
    state = {f"module.{k}": v for k, v in create_model("resnet20").state_dict().items()}
    state = {k.replace(".fc.", ".linear."): v for k, v in state.items()}
    f["aka_legacy"] = root / "resnet20-local.th"
    torch.save({"state_dict": state}, f["aka_legacy"], _use_new_zipfile_serialization=False)
    f["aka_evil"] = root / "resnet20-args.th"
    torch.save(
        {"state_dict": state, "args": _Args()}, f["aka_evil"], _use_new_zipfile_serialization=False
    )
    www = root / "www"
    www.mkdir()
    (www / "resnet20-served.th").write_bytes(f["aka_legacy"].read_bytes())
    with http_server(functools.partial(_Quiet, directory=str(www))) as base:
        entry = dataclasses.replace(
            get_weights("resnet20.akamaster_cifar10"),
            name="resnet20.badhash",
            url=f"{base}/resnet20-served.th",
            sha256="00000000",
        )
        m.setattr(catalogue, "WEIGHTS", (*catalogue.WEIGHTS, entry))
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Iterator[dict[str, Path]]:
    """Every file and folder the cases name (built once; the cases must not change them).
    ``run``: a copy of the session's one-epoch run of TRAIN."""
    root = tmp_path_factory.mktemp("bad")
    copy_run(tiny_run, root)
    f: dict[str, Path] = {"files": root, "out": root / "out", "run": root / "run"}
    with pytest.MonkeyPatch.context() as m:
        yield from _with_published(root, f, m)


def _with_published(
    root: Path, f: dict[str, Path], m: pytest.MonkeyPatch
) -> Iterator[dict[str, Path]]:
    _common_files(root, f)
    for _ in _published_files(root, f, m):
        yield f


def _copy_run(root: Path, f: dict[str, Path], name: str) -> Path:
    run = root / name
    run.mkdir()
    for item in ("last.pt", "config.yaml"):
        (run / item).write_bytes((f["run"] / item).read_bytes())
    f[name] = run
    return run


def _resume_files(root: Path, f: dict[str, Path]) -> None:
    """Run folders for the --resume cases: copies of the one-epoch run, changed by hand."""
    import yaml

    from resnetlab.runtime.checkpoint import load_checkpoint
    from resnetlab.runtime.config import config_from_dict, save_config

    for name, section, key, value in (
        ("edited_run", "optim", "lr", 0.5),
        ("edited_epochs_run", "run", "epochs", 7),
    ):
        run = _copy_run(root, f, name)
        data = yaml.safe_load((run / "config.yaml").read_text())
        data[section][key] = value
        (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        f[name.replace("_run", "_config")] = run / "config.yaml"
    garbled = _copy_run(root, f, "garbled_run")
    (garbled / "config.yaml").write_text("optim: [lr: 0.1\n")
    f["garbled_config"] = garbled / "config.yaml"
    branch = _copy_run(root, f, "branch_run")  # best.pt from an earlier epoch than last.pt
    (branch / "best.pt").write_bytes(f["ckpt"].read_bytes())
    f["branch_last"] = branch / "last.pt"
    state = load_checkpoint(f["ckpt"])  # a run that has trained 3 epochs (15 steps)
    state.update(epoch=3, step=15)
    state["config"]["run"]["epochs"] = 3
    three = root / "three_run"
    three.mkdir()
    torch.save(state, three / "last.pt")
    save_config(config_from_dict(state["config"]), three / "config.yaml")
    f["three_run"], f["three_config"] = three, three / "config.yaml"


def _common_files(root: Path, f: dict[str, Path]) -> None:
    f["ckpt"] = root / "run" / "last.pt"
    _resume_files(root, f)
    f["empty"] = root / "empty"
    f["empty"].mkdir()
    _png(root / "one_class" / "cat" / "0.png", (200, 0, 0))
    _png(root / "one_class" / "cat" / "1.png", (0, 200, 0))
    f["one_class"] = root / "one_class"
    for cls in ("a", "b"):
        for i in range(3):
            bad = root / "corrupt_images" / cls / f"{i}.png"
            bad.parent.mkdir(parents=True, exist_ok=True)
            bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    f["corrupt_images"] = root / "corrupt_images"
    for split in ("train", "test"):
        for k, cls in enumerate(("ant", "bee", "cow")):
            for i in range(4):
                _png(root / "three" / split / cls / f"{i}.png", (60 * k, 20 * i, 90))
    f["three_classes"] = root / "three"
    f["notes"] = root / "notes.txt"
    f["notes"].write_text("not an image, not a checkpoint\n")
    f["image"] = root / "image.png"
    _png(f["image"], (10, 20, 30))
    f["foreign"] = root / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, f["foreign"])
    data = f["ckpt"].read_bytes()
    f["half"] = root / "half.pt"
    f["half"].write_bytes(data[: len(data) // 2])
    f["noise_run"] = root / "noise_run"
    f["noise_run"].mkdir()
    f["noise"] = f["noise_run"] / "last.pt"
    f["noise"].write_bytes(os.urandom(4096))
    _pt2_files(root, f)
    f["existing_onnx"] = root / "existing.onnx"
    f["existing_onnx"].write_bytes(b"a model exported earlier")
    f["dir_safetensors"] = root / "weights.safetensors"
    f["dir_safetensors"].mkdir()
    _misfit_export(root, f)
    f["bad_tar"] = root / "data.tar.gz"
    f["bad_tar"].write_bytes(b"this is not gzip")
    recipes = {
        "bad_yaml": "model: [resnet20\noptim: {lr: 0.1\n",
        "list_yaml": "- model\n- data\n",
        "wrong_key_yaml": "optim:\n  lrr: 0.1\nrun:\n  epochs: 1\n",
        "section_yaml": "optimizer:\n  lr: 0.1\nrun:\n  epochs: 1\n",
        "scalar_section_yaml": "optim: 5\nrun:\n  epochs: 1\n",
        "no_length_yaml": "model:\n  name: resnet20\n",
        "empty_section_yaml": "model:\nrun:\n",
        "options_scalar_yaml": "model:\n  options: 5\nrun:\n  epochs: 1\n",
        "dup_key_yaml": "optim:\n  lr: 0.1\n  lr: 0.5\nrun:\n  epochs: 1\n",
        "dup_section_yaml": "run:\n  epochs: 1\noptim:\n  lr: 0.1\nrun:\n  epochs: 3\n",
    }
    for key, text in recipes.items():
        f[key] = root / f"{key}.yaml"
        f[key].write_text(text)
    bomb, prev = "a: &a [x, x, x, x, x, x, x, x, x, x]\n", "a"
    for name in "bcdefghi":  # 10 ** 9 values once expanded
        bomb += f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n"
        prev = name
    f["bomb_yaml"] = root / "bomb_yaml.yaml"
    f["bomb_yaml"].write_text(bomb + "model:\n  options:\n    x: *i\nrun:\n  epochs: 1\n")
    f["binary_yaml"] = root / "binary_yaml.yaml"
    f["binary_yaml"].write_bytes(b"model:\n  name: \xff\xfe\x00resnet\n")
    f["dead_run"] = root / "dead_run"  # kill -9 during its first save: logs, no last.pt
    f["dead_run"].mkdir()
    (f["dead_run"] / "config.yaml").write_text("recipe: paper-cifar\n")
    f["dead_metrics"] = f["dead_run"] / "metrics.csv"
    f["dead_metrics"].write_text("epoch,train_loss\n1,2.3\n")
    (f["dead_run"] / "steps.csv").write_text("step,epoch,loss,error\n1,1,2.3,0.9\n")
    f["readonly"] = root / "readonly"
    f["readonly"].mkdir()
    f["readonly"].chmod(0o555)
    f["unreadable"] = root / "unreadable.png"
    _png(f["unreadable"], (1, 2, 3))
    f["unreadable"].chmod(0o000)
    _other_architecture_files(root, f)


def _other_architecture_files(root: Path, f: dict[str, Path]) -> None:
    """A published ResNet-18 file, a photo, and a folder in the PyTorch transfer-learning
    tutorial's layout (train/val, no test)."""
    from resnetlab.interop.fact_sheet import CIFAR10_CLASSES

    f["r18"] = root / "r18.pth"
    torch.save(create_model("resnet18").state_dict(), f["r18"])
    f["photo"] = root / "photo.png"
    Image.new("RGB", (40, 30), (90, 120, 200)).save(f["photo"])
    f["train_val"] = root / "tv"
    for split in ("train", "val"):
        for c, cls in enumerate(CIFAR10_CLASSES):
            _png(f["train_val"] / split / cls / "a.png", (20 * c, 90, 30))


def _pt2_files(root: Path, f: dict[str, Path]) -> None:
    """``.pt2`` archives of a one-layer program (the reader's checks come before the model):
    with resnetlab's format tag only, cut in half, from plain ``torch.export.save``, and of
    a later format."""
    from resnetlab.infer.int8_file import save_quantized

    program = torch.export.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),))
    f["pt2_stub"] = root / "stub.pt2"
    save_quantized(program, f["pt2_stub"], {"model_name": "resnet20"})
    data = f["pt2_stub"].read_bytes()
    f["pt2_half"] = root / "half.pt2"
    f["pt2_half"].write_bytes(data[: len(data) // 2])
    f["pt2_foreign"] = root / "foreign.pt2"
    torch.export.save(program, f["pt2_foreign"])
    f["pt2_newer"] = root / "newer.pt2"
    save_quantized(program, f["pt2_newer"], {"format": "resnetlab-int8/2"})


def _misfit_export(root: Path, f: dict[str, Path]) -> None:
    """Our export of the ResNet-20 run, its metadata edited to name ResNet-56, and to ask
    for 30,000-pixel images."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from resnetlab.infer.export import export_safetensors

    good = export_safetensors(f["ckpt"], root / "exported.safetensors")
    with safe_open(str(good), framework="pt") as fh:
        meta = {**fh.metadata(), "model": "resnet56"}
    f["misfit_safetensors"] = root / "misfit.safetensors"
    save_file(load_file(str(good)), str(f["misfit_safetensors"]), metadata=meta)
    pre = json.loads(meta["preprocess"]) | {"image_size": 30_000}
    meta |= {"model": "resnet20", "preprocess": json.dumps(pre)}
    f["huge_safetensors"] = root / "huge.safetensors"
    save_file(load_file(str(good)), str(f["huge_safetensors"]), metadata=meta)
    good.unlink()


_DIGESTS: dict[tuple[int, ...], str] = {}


def _digest(path: Path) -> str:
    """The file's SHA-256, read again only when its inode, size, mtime or ctime changed: any
    write or replacement changes them (ctime cannot be set back), and re-reading the 46 MB
    ResNet-18 file twice a case cost seconds over the table."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _DIGESTS[key]


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and os.access(path, os.R_OK):
            out[str(path.relative_to(root))] = _digest(path)
    return out


# ---------------------------------------------------------------- the table
@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    c: Case, files: dict[str, Path], capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if c.needs_non_root and IS_ROOT:
        pytest.skip("permissions do not apply to root")
    for module in c.hide:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    for key, value in c.env:
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in c.argv]
    root = files["files"]
    before = _digests(root)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == c.code, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"resnetlab {argv[0]}: error: "), lines[0]
    assert c.needle in lines[0], lines[0]
    assert "Traceback" not in err + out
    after = _digests(root)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert changed == [], f"changed or deleted: {changed}"
    assert not list(root.rglob("*.tmp")), "temporary files left behind"
    if c.keep:  # the file the case names, spelt out
        kept = str(files[c.keep].relative_to(root))
        assert after[kept] == before[kept]
    table = os.environ.get("RESNETLAB_BAD_INPUT_TABLE")
    if table:
        with open(table, "a", encoding="utf-8") as fh:
            row = {
                "id": c.id,
                "what": c.what,
                "code": code,
                "argv": [a.replace(str(root), "DIR") for a in argv],
                "error": lines[0].replace(str(root), "DIR"),
            }
            fh.write(json.dumps(row) + "\n")


def test_table_is_large_and_unique() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- writers and what is there
# Every writer (text output, figures, exports): -o naming a symlink or a special file.
WRITERS = {
    "models": ("models", "resnet2*", "-o", "{target}"),
    "plot": ("plot", "resnet20", "-o", "{target}"),
    "export": ("export", "{ckpt}", "-o", "{target}"),
}
SUFFIX = {"models": ".txt", "plot": ".png", "export": ".safetensors"}


def _special(path: Path, kind: str) -> None:
    if kind == "named pipe":
        os.mkfifo(path)
    elif IS_ROOT:  # /dev/null's numbers (1, 3), made here: the real one is never at risk
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        pytest.skip("making a device node needs root")


@pytest.mark.parametrize("kind", ["named pipe", "character device"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writers_refuse_special_files(
    writer: str, kind: str, files: dict[str, Path], tmp_path: Path, capsys: Capture
) -> None:
    """`-o NODE` used to rename a regular file over the node (as root, `-o /dev/null`
    would have destroyed it): refused in one line, the node left as it was."""
    target = tmp_path / f"node{SUFFIX[writer]}"
    _special(target, kind)
    before = target.lstat()
    argv = [a.format(target=target, ckpt=files["ckpt"]) for a in WRITERS[writer]]
    code, out, err = cli(capsys, *argv)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"it is a {kind}, not a file" in err, err
    after = target.lstat()
    assert after.st_mode == before.st_mode and after.st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writers_follow_symlinks(
    writer: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o LINK` replaces the file the link points to, atomically, and the link stays a
    link (it used to become a regular file); a new file gets the umask's mode (a
    safetensors export was always 0600)."""
    real = tmp_path / "real" / f"file{SUFFIX[writer]}"
    real.parent.mkdir()
    real.write_bytes(b"old")
    real.chmod(0o600)
    link = tmp_path / f"link{SUFFIX[writer]}"
    link.symlink_to(real)
    argv = [a.format(target=link, ckpt=files["ckpt"]) for a in WRITERS[writer]]
    old_umask = os.umask(0o022)
    try:
        code, out, err = cli(capsys, *argv)
    finally:
        os.umask(old_umask)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() != b"old" and real.stat().st_size > 50
    assert stat.S_IMODE(real.stat().st_mode) == 0o644
    assert sorted(p.name for p in real.parent.iterdir()) == [real.name]


# ---------------------------------------------------------------- issue 17: contract gaps
def _two_classes(root: Path) -> Path:
    for k, cls in enumerate(("a", "b")):
        for i in range(3):
            _png(root / "data" / cls / f"{i}.png", (90 * k, 30 * i, 60))
    return root / "data"


def _link_class(data: Path) -> None:
    _png(data.parent / "elsewhere" / "c" / "0.png", (5, 200, 5))
    _png(data.parent / "elsewhere" / "c" / "1.png", (5, 100, 5))
    (data / "c").symlink_to(data.parent / "elsewhere" / "c", target_is_directory=True)


def _link_loop(data: Path) -> None:
    (data / "a" / "loop").symlink_to(data, target_is_directory=True)


def _dangling(name: str) -> Any:
    return lambda data: (data / name).symlink_to(data / "gone" / name)


def _other_format(name: str) -> Any:
    return lambda data: (data / name).write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")


# oddity → (make it, the classes found, the files reported as skipped)
FOLDER_ODDITIES: dict[str, tuple[Any, tuple[str, ...], list[str]]] = {
    "symlinked-class-folder": (_link_class, ("a", "b", "c"), []),
    "symlink-loop": (_link_loop, ("a", "b"), []),
    "dangling-symlink-image": (
        _dangling("a/gone.png"),
        ("a", "b"),
        ["a/gone.png: a symlink to a file that does not exist"],
    ),
    "dangling-symlink-ds-store": (
        _dangling(".DS_Store"),
        ("a", "b"),
        [".DS_Store: a symlink to a file that does not exist"],
    ),
    "svg": (
        _other_format("a/logo.svg"),
        ("a", "b"),
        ["a/logo.svg: .svg images are not read (convert them to PNG or JPEG)"],
    ),
    "heic": (
        _other_format("b/IMG_0001.HEIC"),
        ("a", "b"),
        ["b/IMG_0001.HEIC: .HEIC images are not read (convert them to PNG or JPEG)"],
    ),
}


@pytest.mark.parametrize("oddity", sorted(FOLDER_ODDITIES))
def test_data_folder_oddities_are_read_or_reported(oddity: str, tmp_path: Path) -> None:
    """A linked class folder is data (it was skipped without a word); a dangling symlink
    anywhere (even ``.DS_Store``; it aborted loading) and an SVG/HEIC file are skipped and
    reported, on the first run and again on a rerun read from the decoded cache."""
    from resnetlab.data.datasets import load_data

    make, classes, skipped = FOLDER_ODDITIES[oddity]
    data = _two_classes(tmp_path)
    make(data)
    for _ in ("decoded", "cached"):
        bundle = load_data(str(data), val_fraction=0.3, cache=True)
        assert bundle.classes == classes
        assert [f"{n}: {r}" for n, r in bundle.skipped] == skipped


def test_train_reports_skipped_files_on_a_cached_rerun(tmp_path: Path, capsys: Capture) -> None:
    """The CLI lists what it skipped, and a rerun from the decoded cache lists it again."""
    data = _two_classes(tmp_path)
    _dangling(".DS_Store")(data)
    _other_format("a/logo.svg")(data)
    argv = [a for a in TRAIN if a != "sample"]
    argv[argv.index("--data") + 1 : argv.index("--data") + 1] = [str(data)]
    for name in ("first", "cached"):
        code, out, err = cli(
            capsys,
            *argv,
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "runs"),
            "--name",
            name,
            "--set",
            "data.val_fraction=0.4",
            "--batch-size",
            "2",
        )
        assert code == 0, err
        assert "skipped .DS_Store: a symlink to a file that does not exist" in out
        assert "skipped a/logo.svg: .svg images are not read" in out


def _reject(constant: str) -> None:
    raise AssertionError(f"not JSON: a bare {constant}")


def test_eval_json_holds_null_for_an_undefined_accuracy(
    files: dict[str, Path], tmp_path: Path, capsys: Capture
) -> None:
    """A class with no test images has no accuracy: ``null`` in eval's JSON, which held a
    bare ``NaN`` (not JSON; strict parsers refuse the whole file)."""
    from resnetlab.runtime.checkpoint import load_checkpoint

    classes = load_checkpoint(files["ckpt"])["classes"]
    for k, cls in enumerate(classes):
        _png(tmp_path / "ten" / "train" / cls / "0.png", (20 * k, 0, 0))
        _png(tmp_path / "ten" / "train" / cls / "1.png", (0, 20 * k, 0))
        if k:  # the first class has no test images
            _png(tmp_path / "ten" / "test" / cls / "0.png", (0, 0, 20 * k))
    code, out, err = cli(
        capsys,
        "eval",
        str(files["ckpt"]),
        "--data",
        str(tmp_path / "ten"),
        "--format",
        "json",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, err
    printed = json.loads(out[: out.rindex("\nwrote ")], parse_constant=_reject)
    written = json.loads((tmp_path / "out" / "eval-test.json").read_text(), parse_constant=_reject)
    for result in (printed, written):
        assert result["per_class_top1"][classes[0]] is None
        assert all(result["per_class_top1"][c] is not None for c in classes[1:])


def test_sigterm_during_the_final_test_stops_cleanly_and_resumes(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the test split is evaluated: exit 0, results.json says "sigterm" with
    no test figures (no confusion files, no temporary files), and ``--resume`` runs the
    test. It exited 143 with no report."""
    import signal

    from resnetlab.train import fitting

    real = fitting.final_test

    def preempted(*args: Any, **kw: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler's preemption, mid-evaluation
        return real(*args, **kw)

    def default_action(signum: int, frame: Any) -> None:  # instead of killing pytest
        raise AssertionError("SIGTERM reached the process's default handler")

    monkeypatch.setattr(fitting, "final_test", preempted)
    old = signal.signal(signal.SIGTERM, default_action)
    argv = [a for a in TRAIN if a != "--no-test"]
    out_dir = ["--epochs", "1", "--out", str(tmp_path), "--name", "run"]
    try:
        code, out, err = cli(capsys, *argv, *out_dir)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert code == 0, err
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "sigterm" and results["test"] is None
    assert "stopped during the test evaluation" in out
    assert not (run / "confusion.png").exists() and not (run / "confusion.txt").exists()
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
    monkeypatch.setattr(fitting, "final_test", real)
    code, out, err = cli(capsys, "train", "--resume", str(run))
    assert code == 0, err
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed" and results["test"]["top1"] >= 0
    assert (run / "confusion.png").is_file()
