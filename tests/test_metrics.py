"""Tests for the metrics: top-k counts and the confusion matrix (resnetlab.runtime.metrics),
logs (train.logs), the progress bar and the epoch line (train.progress), curves (train.curves)."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab.runtime.metrics import ConfusionMatrix, topk_correct
from resnetlab.train.curves import plot_curves
from resnetlab.train.logs import TENSORBOARD_DIR, MetricsLogger, read_metrics
from resnetlab.train.progress import epoch_bar, format_epoch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


# --------------------------------------------------------------------------- top-k


def test_topk_correct_known_answers() -> None:
    # 4 samples, 4 classes; ranking per row is given by the logits.
    logits = torch.tensor(
        [
            [0.9, 0.05, 0.03, 0.02],  # ranks: 0, 1, 2, 3
            [0.1, 0.2, 0.3, 0.4],  # ranks: 3, 2, 1, 0
            [0.3, 0.4, 0.2, 0.1],  # ranks: 1, 0, 2, 3
            [0.25, 0.35, 0.3, 0.1],  # ranks: 1, 2, 0, 3
        ]
    )
    targets = torch.tensor([0, 1, 0, 3])
    # sample 0: top1; sample 1: 3rd; sample 2: 2nd; sample 3: 4th.
    got = topk_correct(logits, targets, ks=(1, 2, 3, 4))
    assert {k: int(v) for k, v in got.items()} == {1: 1, 2: 2, 3: 3, 4: 4}


def test_topk_correct_returns_int64_tensors_on_device() -> None:
    logits = torch.randn(8, 10)
    targets = torch.randint(0, 10, (8,))
    got = topk_correct(logits, targets)
    assert set(got) == {1, 5}
    for v in got.values():
        assert isinstance(v, torch.Tensor)
        assert v.dim() == 0
        assert v.dtype == torch.int64
        assert v.device == logits.device
    assert int(got[1]) <= int(got[5]) <= 8
    assert int(got[1]) == int((logits.argmax(1) == targets).sum())


def test_topk_correct_clamps_k_above_classes() -> None:
    logits = torch.randn(5, 3)
    targets = torch.tensor([0, 1, 2, 1, 0])
    got = topk_correct(logits, targets, ks=(1, 5))
    assert int(got[5]) == 5  # top-5 of 3 classes: every sample


def test_topk_correct_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        topk_correct(torch.randn(2, 3), torch.tensor([0, 1]), ks=(0,))
    with pytest.raises(ValueError, match="targets"):
        topk_correct(torch.randn(2, 3), torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------- confusion matrix


def _example() -> ConfusionMatrix:
    cm = ConfusionMatrix(3)
    # class 0: 2 right, 1 called class 1; class 1: 1 right, 1 called class 0; class 2: none.
    cm.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]))
    cm.update(torch.tensor([1, 0]), torch.tensor([1, 1]))
    return cm


def test_confusion_matrix_counts_and_accuracy() -> None:
    cm = _example()
    assert cm.matrix.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert cm.matrix.dtype == torch.int64
    acc = cm.per_class_accuracy()
    assert acc[0] == pytest.approx(2 / 3)
    assert acc[1] == pytest.approx(0.5)
    assert math.isnan(acc[2])
    assert cm.accuracy() == pytest.approx(3 / 5)


def test_confusion_matrix_accepts_logits_and_rejects_out_of_range() -> None:
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    assert cm.matrix.tolist() == [[1, 1], [0, 0]]
    with pytest.raises(ValueError, match="class indices"):
        cm.update(torch.tensor([2]), torch.tensor([0]))
    assert math.isnan(ConfusionMatrix(2).accuracy())


def test_confusion_matrix_to_text() -> None:
    text = _example().to_text(["cat", "dog", "bird"])
    for name in ("cat", "dog", "bird"):
        assert name in text
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["cat", "2", "1", "0"]
    assert lines[1].split()[-1] == "66.7"
    assert lines[3].split()[-1] == "-"  # no samples of "bird"
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns
    with pytest.raises(ValueError, match="class names"):
        _example().to_text(["a", "b"])


def test_confusion_matrix_plot_writes_png_atomically(tmp_path: Path) -> None:
    out = tmp_path / "confusion.png"
    _example().plot(out, ["cat", "dog", "bird"], title="test")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert _no_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]


# --------------------------------------------------------------------------- logger


def _rows() -> list[dict[str, float | int | str]]:
    return [
        {"epoch": 1, "train_loss": 2.0, "val_top1": 40.0, "lr": 0.1, "phase": "warm"},
        {"epoch": 2, "train_loss": 1.5, "val_top1": 55.5, "lr": 0.1, "phase": "main"},
    ]


def test_metrics_logger_writes_csv_and_jsonl(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for row in _rows():
            log.log(row)
        # flushed per row: readable before close
        assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    with (tmp_path / "metrics.csv").open(newline="") as f:
        table = list(csv.reader(f))
    assert table == [
        ["epoch", "train_loss", "val_top1", "lr", "phase"],
        ["1", "2.0", "40.0", "0.1", "warm"],
        ["2", "1.5", "55.5", "0.1", "main"],
    ]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == _rows()
    assert read_metrics(tmp_path) == _rows()


def test_metrics_logger_appends_on_resume(tmp_path: Path) -> None:
    first, second = _rows()
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log(first)
    log.close()
    log = MetricsLogger(tmp_path)
    log.log(second)
    log.close()
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 3
    assert csv_lines[0].startswith("epoch,")
    assert sum(line.startswith("epoch,") for line in csv_lines) == 1
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2]


def test_metrics_logger_keeps_existing_header(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log({"epoch": 1, "lr": 0.1})
    with (
        MetricsLogger(tmp_path, tensorboard=False) as log,
        pytest.warns(UserWarning, match="not in the CSV header"),
    ):
        log.log({"lr": 0.01, "epoch": 2, "val_top1": 50.0})
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines == ["epoch,lr", "1,0.1", "2,0.01"]
    assert read_metrics(tmp_path)[1]["val_top1"] == 50.0


def test_read_metrics_missing_and_truncated(tmp_path: Path) -> None:
    assert read_metrics(tmp_path) == []
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "lo')
    assert read_metrics(tmp_path) == [{"epoch": 1}]


# --------------------------------------------------------------------------- progress bar


def test_progress_bar_silent_when_not_a_tty() -> None:
    stream = io.StringIO()
    bar = epoch_bar(10, desc="train", stream=stream)
    assert bar.disable
    for _ in range(10):
        bar.set_postfix(loss=1.0, refresh=False)
        bar.update(1)
    bar.close()
    assert stream.getvalue() == ""
    bar = epoch_bar(10, desc="train", stream=_Terminal(), enabled=False)  # a rank other than 0
    assert bar.disable


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_draws_and_ends_line() -> None:
    stream = _Terminal()
    with epoch_bar(4, desc="train", stream=stream, initial=1) as bar:
        for _ in range(3):
            bar.set_postfix(loss=1.234, refresh=False)
            bar.update(1)
    text = stream.getvalue()
    assert text.startswith("\r")
    assert text.endswith("\n")
    assert text.count("\n") == 1
    last = text.rstrip("\n").split("\r")[-1]
    assert "train" in last
    assert "4/4" in last
    assert "100%" in last
    assert "it/s" in last
    assert "loss=1.23" in last


# --------------------------------------------------------------------------- curves, text


def test_plot_curves_full_rows(tmp_path: Path) -> None:
    rows = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "val_loss": 2.2 / e,
            "train_top1": 30.0 * e,
            "val_top1": 28.0 * e,
            "lr": 0.1 / 10 ** (e - 1),
        }
        for e in (1, 2, 3)
    ]
    out = tmp_path / "curves.png"
    plot_curves(rows, out, title="run")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert _no_temp_files(tmp_path)


def test_plot_curves_some_keys(tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    plot_curves([{"train_loss": 1.0}, {"train_loss": 0.8}, {"train_loss": 0.7}], out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    plot_curves([], out)  # no rows at all: empty panels, still a chart
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert _no_temp_files(tmp_path)


def test_format_epoch() -> None:
    row = {
        "epoch": 3,
        "epochs": 30,
        "train_loss": 1.2341,
        "train_top1": 55.12,
        "val_loss": 1.3,
        "val_top1": 53.2,
        "val_top5": 94.0,
        "lr": 0.1,
        "images_per_s": 1234.4,
        "epoch_time_s": 12.34,
    }
    line = format_epoch(row)
    assert line == (
        "epoch 3/30  train loss 1.234 top1 55.1%  val loss 1.300 top1 53.2% top5 94.0%"
        "  lr 0.1  1234 img/s  12.3 s"
    )
    assert format_epoch({"epoch": 1, "val_top1": 10.0}) == "epoch 1  val top1 10.0%"
    assert format_epoch({}) == ""


def test_metrics_logger_tensorboard_scalars(tmp_path: Path) -> None:
    """The real TensorBoard writer: the event file holds each numeric metric by epoch."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(tmp_path) as log:
        log.log({"epoch": 4, "val_top1": 50.0, "train_loss": 1.5, "phase": "main"})
        log.log({"epoch": 5, "val_top1": 62.5, "train_loss": 0.75, "phase": "main"})
    events = EventAccumulator(str(tmp_path / TENSORBOARD_DIR))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"val_top1", "train_loss"}
    assert [(e.step, e.value) for e in events.Scalars("val_top1")] == [(4, 50.0), (5, 62.5)]
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [(4, 1.5), (5, 0.75)]


def test_metrics_logger_without_tensorboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with MetricsLogger(tmp_path, tensorboard=True) as log:  # skipped without a word
        log.log(_rows()[0])
    assert read_metrics(tmp_path) == _rows()[:1]
    assert not (tmp_path / TENSORBOARD_DIR).exists()


@pytest.mark.parametrize(
    "module",
    [
        "resnetlab.runtime.metrics",
        "resnetlab.train.logs",
        "resnetlab.train.progress",
        "resnetlab.train.curves",
    ],
)
def test_import_does_not_load_matplotlib(module: str) -> None:
    code = f"import sys, {module}; sys.exit(1 if 'matplotlib' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
