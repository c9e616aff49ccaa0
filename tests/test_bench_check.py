"""``bench`` picks an int8 engine only after checking its top-1 on real images, keeps
third-party output out of its table, and its columns line up (issue 31)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from conftest import cli, tiny_train
from resnetlab.infer import fast
from resnetlab.infer.fast import AccuracyCheck, FastModel, optimize_for_inference
from resnetlab.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=10).eval()


def test_int8_without_real_images_is_timed_but_not_picked(net: torch.nn.Module) -> None:
    x = torch.randn(4, 3, 32, 32)
    # Made the fastest on purpose: unchecked, it still must not be picked.
    f = optimize_for_inference(
        net, x, engines=["eager", "onnxruntime-int8"], min_seconds=0.05, keep_memory=False
    )
    assert "onnxruntime-int8" in f.names()
    assert f.engine == "eager"
    report = f.report()
    assert "not picked: accuracy not checked on real images" in report
    assert "were not checked on real images (none given), so none is picked" in report


def test_int8_is_checked_on_the_images_given(net: torch.nn.Module) -> None:
    images = torch.randn(10, 3, 32, 32)
    with torch.no_grad():
        labels = net(images).argmax(dim=1)  # the fp32 model is right on all of them
    check = AccuracyCheck(images, labels, "10 test images")

    def bench(max_int8_drop: float) -> FastModel:
        return optimize_for_inference(
            net,
            torch.randn(4, 3, 32, 32),
            engines=["eager", "onnxruntime-int8"],
            min_seconds=0.05,
            keep_memory=False,
            check=check,
            max_int8_drop=max_int8_drop,
        )

    f = bench(100.0)  # any int8 top-1 is close enough: it may be picked now
    top1 = {r.engine: r.top1 for r in f.results}
    assert top1["eager"] == 100.0 and top1["onnxruntime-int8"] is not None
    assert "int8 engines checked on 10 test images: fp32 top-1 100.00%" in f.report()
    assert "onnxruntime-int8" not in f.held
    strict = bench(-1.0)  # it would have to beat fp32 by a point: held back, with numbers
    assert strict.engine == "eager"
    assert strict.held["onnxruntime-int8"].startswith("not picked: top-1 ")


def test_third_party_output_stays_out_and_columns_line_up(
    net: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = fast.build_runner

    def noisy(engine: str, model: torch.nn.Module, example: torch.Tensor) -> fast.Runner:
        print("INFO:nncf:Dataset contains only 1 samples")
        warnings.warn("a third-party warning", UserWarning, stacklevel=1)
        return real(engine, model, example)

    monkeypatch.setattr(fast, "build_runner", noisy)
    f = optimize_for_inference(
        net,
        torch.randn(2, 3, 32, 32),
        engines=["eager", "onnxruntime-int8", "no-such-engine"],
        min_seconds=0.05,
        keep_memory=False,
    )
    out, err = capsys.readouterr()
    assert "nncf" not in out + err and "third-party warning" not in out + err
    assert f.hidden >= 4
    lines = f.report().splitlines()
    assert "lines of third-party output hidden" in lines[-1]
    # Every row's numbers end where the header's column names end (a long engine name
    # such as onnxruntime-int8 pushed them right).
    header = lines[0]
    end = header.index("images/s") + len("images/s")
    for row in lines[1:3]:
        assert row[end - 1].isdigit() and row[end] == " ", (header, row)


def test_bench_of_a_checkpoint_says_what_int8_was_checked_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from resnetlab.cli import main

    assert main(tiny_train("--iterations", "1", "--out", str(tmp_path), "--name", "r")) == 0
    code, out, err = cli(
        capsys,
        "bench",
        str(tmp_path / "r" / "last.pt"),
        *("--engines", "eager", "onnxruntime-int8", "--seconds", "0.05", "--batch-size", "4"),
    )
    assert code == 0, err
    assert "int8 accuracy check: " in out and " val images of sample" in out
    assert "int8 engines checked on " in out
