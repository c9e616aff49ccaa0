"""A 40-image photo folder fine-tunes through the fine-tune recipe, in one process and under
``torchrun`` with two (issue 31): the recipe's batch of 64 is reduced to fit, in one line
(under torchrun: to each rank's share, said once), and nothing fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, cli
from resnetlab.models import create_model
from test_distributed import torchrun

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def forty(tmp_path: Path) -> tuple[Path, Path]:
    """40 synthetic photos (14 train and 6 val a class, 140-320 px, mixed modes) made by
    scripts/make_photo_folder.py, and a ResNet-18 weights file to start from."""
    photos = tmp_path / "photos"
    made = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_photo_folder.py"), str(photos), "14", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["40", "images"]
    weights = tmp_path / "r18.pth"
    torch.manual_seed(0)
    torch.save(create_model("resnet18").state_dict(), weights)  # torchvision's layout
    return photos, weights


def finetune_args(photos: Path, weights: Path, out: Path) -> list[str]:
    """The fine-tune recipe as its docs run it, at 32 px and for one epoch (seconds)."""
    return [
        *("--recipe", "finetune", "--model", "resnet18", "--data", str(photos)),
        *("--pretrained", str(weights), "--image-size", "32", "--epochs", "1"),
        *("--precision", "fp32", "--device", "cpu", "--no-test"),
        *("--out", str(out), "--name", "ft"),
    ]


def test_a_40_image_folder_finetunes(
    forty: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, weights = forty
    code, out, err = cli(capsys, "train", *finetune_args(photos, weights, tmp_path / "runs"))
    assert code == 0, err
    said = out + err
    assert "Traceback" not in said
    assert "data.batch_size 64 is larger than the 28 training images: using batches of 28" in said
    assert "1 steps/epoch" in said and "train 28, val 12" in said
    assert "discriminative lr" in said  # fine-tuned from the weights, not from scratch
    assert "expects pretrained weights" not in said
    assert (tmp_path / "runs" / "ft" / "best.pt").is_file()


@pytest.mark.slow
def test_a_40_image_folder_finetunes_under_torchrun(
    forty: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, weights = forty
    done = torchrun(*finetune_args(photos, weights, tmp_path / "runs"))
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Traceback" not in said and "Error" not in said, said
    reduced = [line for line in said.splitlines() if "is larger than the" in line]
    want = (
        "data.batch_size 64 is larger than the 28 training images shared by 2 processes: "
        "using batches of 14"
    )
    # One line, from rank 0 (rank 1 logs nothing), with the batch of each of the 2 ranks.
    assert len(reduced) == 1 and want in reduced[0], reduced
    assert "2 processes × batch 14 = 28" in said
    assert said.count("run folder:") == 1  # one run, written by rank 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ft"]
    assert (tmp_path / "runs" / "ft" / "best.pt").is_file()
