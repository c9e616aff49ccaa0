"""Memory: what will not fit is run in pieces (inference) or refused in one line (training,
sizes in untrusted files) before it is allocated. Every case is cheap: the free memory is
made small with ``RESNETLAB_MEMORY_LIMIT`` and estimated on the meta device; nothing here
allocates more than a few megabytes (issue 33, section 4; docs/bad-input.md, "Memory")."""

from __future__ import annotations

import json
import math
import os
import tarfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import cli, tiny_train
from resnetlab.analysis.memory_estimate import (
    CHUNK_SHARE,
    batch_that_fits,
    free_memory_bytes,
    memory_limit_setting,
    memory_needed,
)
from resnetlab.cli import main
from resnetlab.errors import ConfigError, InvalidValueError, first_line
from resnetlab.models import create_model

Capture = pytest.CaptureFixture[str]
LIMIT = "RESNETLAB_MEMORY_LIMIT"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch ResNet-20 of the shipped sample (its test split: 300 images, 32×32)."""
    root = tmp_path_factory.mktemp("memory")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("RESNETLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main([*tiny_train(), "--epochs", "1", "--out", str(root), "--name", "run"]) == 0
    return root / "run" / "last.pt"


def _bytes_for(batch: int, side: int = 32) -> int:
    """A limit under which inference in pieces runs ResNet-20 in batches of ``batch``: its
    estimate fills :data:`CHUNK_SHARE` of it, and one more image would not."""
    model = create_model("resnet20")
    need = memory_needed(model, (batch, 3, side, side), training=False)
    return math.ceil((need + 1) / CHUNK_SHARE)


# ---------------------------------------------------------------- the limit and the fit
@pytest.mark.parametrize(
    ("text", "expected"),
    [("1048576", 2**20), ("2G", 2 * 2**30), ("512MiB", 512 * 2**20), ("1.5g", 3 * 2**29)],
)
def test_the_memory_limit_setting_reads_sizes(
    text: str, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LIMIT, text)
    assert memory_limit_setting() == expected
    assert (free_memory_bytes() or 0) <= expected  # it caps what the machine says


def test_a_memory_limit_that_is_not_a_size_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIMIT, "lots")
    with pytest.raises(ConfigError, match="RESNETLAB_MEMORY_LIMIT='lots' is not a size"):
        free_memory_bytes()


def test_the_batch_that_fits_is_the_largest_whose_estimate_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = create_model("resnet20")
    limit = _bytes_for(37)
    monkeypatch.setenv(LIMIT, str(limit))
    fit = batch_that_fits(model, (1000, 3, 32, 32))
    assert memory_needed(model, (fit.batch, 3, 32, 32), training=False) <= CHUNK_SHARE * limit
    assert memory_needed(model, (fit.batch + 1, 3, 32, 32), training=False) > CHUNK_SHARE * limit
    assert fit.batch == 37
    assert fit.note.endswith("running 1,000 images in batches of 37"), fit.note
    monkeypatch.delenv(LIMIT)
    assert batch_that_fits(model, (8, 3, 32, 32)).note == ""  # it fits: no note


@pytest.mark.parametrize(
    ("name", "n", "side"),
    [("resnet20", 100, 32), ("preact_resnet164", 50, 32), ("vgg16", 4, 224), ("resnet50", 4, 224)],
)
def test_the_untraced_bound_is_above_the_estimate(name: str, n: int, side: int) -> None:
    """``surely_fits`` skips the meta trace (seconds, the first time in a process) where a
    bound says the batch fits: the bound must never be below the estimate."""
    from resnetlab.analysis.memory_estimate import surely_fits

    with torch.device("meta"):
        model = create_model(name)
    need = memory_needed(model, (n, 3, side, side), training=False)
    assert not surely_fits(model, (n, 3, side, side), need)
    assert not surely_fits(model, (n, 3, side, side), 4 * need)  # a fifth at most (ResNet-20)


def test_a_small_batch_is_not_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    import resnetlab.analysis.memory_estimate as estimate

    def traced(*args: object, **kwargs: object) -> int:
        raise AssertionError("traced")

    monkeypatch.setattr(estimate, "memory_needed", traced)
    monkeypatch.setenv(LIMIT, "1G")
    assert batch_that_fits(create_model("resnet20"), (4, 3, 32, 32)).batch == 4


def test_not_even_one_image_that_fits_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIMIT, "1K")
    with pytest.raises(InvalidValueError, match="not even one image fits"):
        batch_that_fits(create_model("resnet20"), (10, 3, 32, 32))


def test_eval_batch_10000_at_128px_is_planned_in_pieces(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eval --batch-size 10000`` at 128 px was killed by the kernel: the batch is now cut to
    what fits, decided on the meta device (nothing allocated)."""
    from resnetlab.infer.predict import Predictor

    p = Predictor.load(ckpt, device="cpu")
    p = replace(p, preprocess=replace(p.preprocess, image_size=128), data_size=(3, 128, 128))
    monkeypatch.setenv(LIMIT, "4G")
    fit = p.fit_batch(10_000)
    assert 0 < fit.batch < 10_000 and "in batches of" in fit.note
    need = memory_needed(p.model, (fit.batch, 3, 128, 128), training=False)
    assert need <= CHUNK_SHARE * 4 * 2**30


# ---------------------------------------------------------------- eval and predict in pieces
def _eval_json(capsys: Capture, ckpt: Path, *extra: str) -> tuple[dict[str, object], str]:
    code, out, err = cli(capsys, "eval", str(ckpt), "--format", "json", *extra)
    assert code == 0, err
    return json.loads(out), err


def test_eval_in_pieces_gives_the_results_of_one_batch(
    ckpt: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, err = _eval_json(capsys, ckpt, "--batch-size", "300")
    assert "in batches of" not in err
    monkeypatch.setenv(LIMIT, str(_bytes_for(64)))
    pieces, err = _eval_json(capsys, ckpt, "--batch-size", "300")
    lines = [line for line in err.splitlines() if "batches of" in line]
    assert len(lines) == 1 and lines[0].startswith("a batch of 300 needs about 148.8 MiB;")
    assert lines[0].endswith("MiB free: running 300 images in batches of 64"), lines[0]
    for key in ("top1", "top5", "confusion", "per_class_top1", "images"):
        assert pieces[key] == whole[key], key
    assert pieces["loss"] == pytest.approx(whole["loss"], rel=1e-6)  # summed in another order


def _images(root: Path, n: int) -> list[str]:
    root.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = root / f"{i}.png"
        Image.new("RGB", (40, 32), (20 * i % 256, 255 - 9 * i, 7 * i % 256)).save(path)
        paths.append(str(path))
    return paths


def test_predict_of_many_images_runs_in_pieces(
    ckpt: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6,000 images in one ``predict`` were decoded and run as one batch; now in batches
    that fit, each decoded when it runs, with the same answers."""
    paths = _images(tmp_path / "many", 11)
    argv = ["predict", str(ckpt), *paths, "--format", "json", "--top-k", "3"]
    code, out, err = cli(capsys, *argv)
    assert code == 0 and "batches of" not in err, err
    whole = json.loads(out)
    monkeypatch.setenv(LIMIT, str(_bytes_for(4)))
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    assert next(line for line in err.splitlines() if "batches of" in line).endswith(
        "running 11 images in batches of 4"
    )
    pieces = json.loads(out)
    assert [p["file"] for p in pieces] == [p["file"] for p in whole]
    for a, b in zip(pieces, whole, strict=True):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        for ta, tb in zip(a["top"], b["top"], strict=True):
            assert ta["probability"] == pytest.approx(tb["probability"], abs=1e-6)


def test_eval_that_cannot_fit_one_image_is_one_line(
    ckpt: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LIMIT, "1K")
    code, _, err = cli(capsys, "eval", str(ckpt))
    assert code == 2 and err.count("\n") == 1, err
    assert "not even one image fits" in err


# ---------------------------------------------------------------- a program's largest batch
class _Tiny(nn.Module):
    """Ten logits from a 32×32 image, in a few ops: a program that exports in a second."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def _bounded_program(bound: int) -> tuple[nn.Module, torch.export.ExportedProgram]:
    torch.manual_seed(0)
    net = _Tiny().eval()
    batch = torch.export.Dim("batch", min=1, max=bound)
    example = (torch.zeros(2, 3, 32, 32),)
    return net, torch.export.export(net, example, dynamic_shapes=({0: batch},))


def test_a_batch_above_the_programs_bound_runs_in_pieces() -> None:
    """int8 programs take batches of at most 4,096 (``Guard failed: x.size()[0] <= 4096``,
    after 52 s of ``quantize``): a larger batch runs in pieces of that size."""
    from resnetlab.infer.quantize import QuantizedNet, program_max_batch

    net, program = _bounded_program(4)
    assert program_max_batch(program) == 4
    x = torch.randn(11, 3, 32, 32)
    with pytest.raises(AssertionError, match="Guard failed"):  # the program itself refuses
        program.module()(x)
    got = QuantizedNet(program)(x)
    assert torch.allclose(got, net(x), atol=1e-6)


def _pt2(ckpt: Path, path: Path, bound: int, **preprocess: object) -> nn.Module:
    """A resnetlab ``.pt2`` holding a small program (batch ≤ ``bound``) with the metadata of
    the checkpoint (its preprocessing changed by ``preprocess``)."""
    from resnetlab.infer.int8_file import save_quantized
    from resnetlab.infer.predict import Predictor

    p = Predictor.load(ckpt, device="cpu")
    net, program = _bounded_program(bound)
    meta = {
        "model_name": p.config.model.name,
        "config": p.config.to_dict(),
        "classes": list(p.classes),
        "preprocess": asdict(p.preprocess) | preprocess,
        "data_size": list(p.data_size),
        "epoch": 1,
    }
    save_quantized(program, path, meta)
    return net


def test_eval_of_a_pt2_above_its_bound_says_so_and_matches(
    ckpt: Path, tmp_path: Path, capsys: Capture
) -> None:
    from resnetlab.infer.predict import Predictor

    net = _pt2(ckpt, tmp_path / "b4.pt2", 4)
    code, out, err = cli(capsys, "eval", str(tmp_path / "b4.pt2"), "--no-compile")
    assert code == 0, err
    assert "the int8 program takes batches of at most 4: running 300 images in batches of 4" in err
    p = Predictor.load(ckpt, device="cpu")
    q = Predictor.load(tmp_path / "b4.pt2")
    data = p.split("test")
    eager, _ = replace(p, model=net).evaluate(data, batch_size=300)
    program, _ = q.evaluate(data, batch_size=300)
    assert program["top1"] == eager["top1"] and program["loss"] == pytest.approx(eager["loss"])


def test_bench_of_a_pt2_above_its_bound_says_so(
    ckpt: Path, tmp_path: Path, capsys: Capture
) -> None:
    _pt2(ckpt, tmp_path / "b4.pt2", 4)
    argv = ["bench", str(tmp_path / "b4.pt2"), "--batch-size", "10", "--seconds", "0.01"]
    code, out, err = cli(capsys, *argv, "--engines", "int8-reference")
    assert code == 0, err
    assert "the int8 program takes batches of at most 4: it runs the batch of 10 in 3 pieces" in err
    assert "Guard failed" not in out + err


def test_onnx_export_traces_any_batch() -> None:
    """``bench --batch-size 5000 --engines onnxruntime`` traced the export on the whole batch,
    above the export's bound of 4,096: the engine was skipped with torch's coloured error."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from resnetlab.infer.engines import onnxruntime_runner

    net = _Tiny().eval()
    x = torch.randn(4100, 3, 32, 32)
    run = onnxruntime_runner(net, x)
    assert torch.allclose(run(x), net(x).detach(), atol=1e-5)


def test_terminal_escape_codes_are_taken_out_of_an_error_line() -> None:
    err = RuntimeError("Failed to export. \x1b[96mThis is step 1/3\x1b[0m of it\n## more")
    assert first_line(err) == "Failed to export. This is step 1/3 of it"


# ---------------------------------------------------------------- sizes in untrusted files
@pytest.mark.parametrize("size", [30_000, 0, -5])
def test_an_int8_file_asking_for_a_huge_image_is_refused(
    size: int, ckpt: Path, tmp_path: Path, capsys: Capture
) -> None:
    """A checkpoint's ``image_size`` of 30,000 made ``predict`` allocate 10.8 GB; the int8
    file's and the export's metadata are checked as the checkpoint's are."""
    _pt2(ckpt, tmp_path / "big.pt2", 4, image_size=size)
    image = _images(tmp_path / "one", 1)
    code, _, err = cli(capsys, "predict", str(tmp_path / "big.pt2"), *image)
    assert code == 2 and err.strip().count("\n") == 0, err
    assert f"its input size {size} is outside 1–4096 pixels" in err


def test_an_export_asking_for_a_huge_image_is_refused(
    ckpt: Path, tmp_path: Path, capsys: Capture
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from resnetlab.infer.export import export_safetensors

    good = export_safetensors(ckpt, tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as fh:
        meta = dict(fh.metadata())
    meta["preprocess"] = json.dumps(json.loads(meta["preprocess"]) | {"image_size": 30_000})
    save_file(load_file(str(good)), str(tmp_path / "big.safetensors"), metadata=meta)
    image = _images(tmp_path / "one", 1)
    code, _, err = cli(capsys, "predict", str(tmp_path / "big.safetensors"), *image)
    assert code == 2 and err.count("\n") == 1, err
    assert "its input size 30000 is outside 1–4096 pixels" in err


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf() + data + b"\0" * (-len(data) % 512)


def _png_bytes(colour: tuple[int, int, int]) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _tar_with_a_huge_member(path: Path, size: int) -> None:
    """A ``.tar`` whose member ``a/huge.png`` declares ``size`` bytes: a sparse file (the
    member's data is a hole), so it takes a few kB of disk whatever ``size`` says."""
    with path.open("wb") as f:
        info = tarfile.TarInfo("a/huge.png")
        info.size = size
        f.write(info.tobuf())
        f.seek(size + (-size % 512), os.SEEK_CUR)
        for name, colour in (("a/0.png", (200, 0, 0)), ("b/0.png", (0, 0, 200))):
            f.write(_member(name, _png_bytes(colour)))
        f.write(b"\0" * 1024)


def test_a_tar_member_declaring_6_gib_is_skipped_unread(tmp_path: Path) -> None:
    """A 28 MB ``.tar.gz`` with a 6 GiB member was read whole into memory."""
    from resnetlab.data.folders import LoadReport, index_folder, load_split
    from resnetlab.data.pipeline import probe_side

    archive = tmp_path / "data.tar"
    _tar_with_a_huge_member(archive, 6 * 2**30)
    assert archive.stat().st_blocks * 512 < 2**20  # sparse: nothing written for the hole
    started = time.monotonic()
    report = LoadReport()
    images = load_split(index_folder(archive), "all", report=report)
    assert len(images) == 2
    assert report.skipped == [
        ("a/huge.png", "not read: 6,144 MiB, over the 256 MiB an image file may have")
    ]
    assert probe_side(str(archive)) == 8  # the first image that is read
    assert time.monotonic() - started < 10


def test_an_earlier_report_of_dev_zero_is_refused_unread(capsys: Capture, tmp_path: Path) -> None:
    """``reproduce --previous /dev/zero`` read until memory ran out."""
    from resnetlab.experiments.earlier import EarlierReportError, earlier_runs

    with pytest.raises(EarlierReportError, match="over 64 MiB, not read further"):
        earlier_runs(Path("/dev/zero"))
    big = tmp_path / "results.json"
    with big.open("wb") as f:  # sparse: 100 MiB by its size, nothing on disk
        f.truncate(100 * 2**20)
    with pytest.raises(EarlierReportError, match="100 MiB, not read further"):
        earlier_runs(big)
