"""Property-based fuzzing of the files resnetlab reads: a real checkpoint, a safetensors export,
an int8 ``.pt2``, an earlier report's ``results.json`` and a ``.tar`` of images, each damaged
by hypothesis (bytes flipped, cut short, junk inserted, a range zeroed). Whatever the damage,
the command ends in bounded time with exit 0 or one ``resnetlab <command>: error: …`` line and
exit 2, never a traceback or an internal error, and every file that was there before is as it
was. (That no crafted file runs code is tests/test_no_code_runs.py: random damage does not
write payloads.) Examples are derandomized and few: RESNETLAB_FUZZ_EXAMPLES=N searches more.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import cli

DEEP = os.environ.get("RESNETLAB_FUZZ_EXAMPLES")
BOUNDED = settings(
    max_examples=int(DEEP or 12),
    deadline=timedelta(seconds=60),
    derandomize=not DEEP,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Damage = Callable[[bytes], bytes]


@st.composite
def damage(draw: st.DrawFn) -> Damage:
    """One way to break a file's bytes, at a place hypothesis chooses."""
    kind = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
    where = draw(st.floats(0, 1))
    size = draw(st.integers(1, 64))
    junk = draw(st.binary(min_size=1, max_size=64))

    def apply(data: bytes) -> bytes:
        at = int(where * (len(data) - 1))
        if kind == "flip":
            return data[:at] + bytes(b ^ 0xFF for b in data[at : at + size]) + data[at + size :]
        if kind == "cut":
            return data[:at]
        if kind == "insert":
            return data[:at] + junk + data[at:]
        return data[:at] + bytes(size) + data[at + size :]

    return apply


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real files each example damages a copy of."""
    from resnetlab.infer.int8_file import save_quantized
    from resnetlab.infer.quantize import quantize_program
    from resnetlab.models import create_model

    root = tmp_path_factory.mktemp("fuzz-files")
    ckpt = root / "best.pt"  # a real one-epoch ResNet-20 (tests/legacy: earlier code wrote it)
    shutil.copyfile(Path(__file__).parent / "legacy" / "run" / "best.pt", ckpt)
    with pytest.MonkeyPatch.context() as m:
        m.setenv("RESNETLAB_CACHE", str(root / "cache"))
        from resnetlab.cli import main

        assert main(["export", str(ckpt), "-o", str(root / "m.safetensors")]) == 0
    torch.manual_seed(0)
    program = quantize_program(create_model("resnet20").eval(), torch.randn(4, 3, 32, 32))
    save_quantized(program, root / "m.pt2", {"model": "resnet20", "classes": list("abcdefghij")})
    runs = [{"model": "resnet20", "seed": 0, "test_top1": 91.5, "best_val_top1": 90.0}]
    report = {"provenance": {"command": "resnetlab reproduce cifar-table", "runs": runs}}
    (root / "results.json").write_text(json.dumps(report))
    with tarfile.open(root / "photos.tar", "w") as tar:
        for split in ("train", "test"):
            for label, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
                for i in range(3):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
                    info = tarfile.TarInfo(f"photos/{split}/{label}/{i}.png")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    Image.new("RGB", (32, 32), (90, 90, 90)).save(root / "x.png")
    names = {"safetensors": "m.safetensors", "pt2": "m.pt2", "results": "results.json"}
    names |= {"tar": "photos.tar", "image": "x.png"}
    return {"ckpt": ckpt} | {key: root / name for key, name in names.items()}


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run_damaged(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    source: Path,
    broken: Damage,
    argv: Callable[[Path], list[str]],
) -> None:
    work = tmp_path / f"case-{hashlib.sha256(os.urandom(8)).hexdigest()[:8]}"
    work.mkdir()
    target = work / source.name
    target.write_bytes(broken(source.read_bytes()))
    before = _hashes(work)
    code, _, err = cli(capsys, *argv(target))
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("resnetlab "), err
    assert "Traceback" not in err and "internal error" not in err, err
    after = _hashes(work)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed


# Each file resnetlab reads, and the command that reads it (``{file}``: the damaged copy,
# ``{image}``/``{ckpt}``/``{dir}``: an intact image, the intact checkpoint, the copy's folder).
TABLE = ["reproduce", "cifar-table", "--depths", "20", "--seeds", "0", "--report-only"]
READERS = {
    "checkpoint": ("ckpt", ["predict", "{file}", "{image}"]),
    "safetensors export": ("safetensors", ["predict", "{file}", "{image}"]),
    "int8 file": ("pt2", ["predict", "{file}", "{image}"]),
    "earlier report": ("results", [*TABLE, "--out", "{dir}/out", "--previous", "{file}"]),
    "image archive": ("tar", ["eval", "{ckpt}", "--data", "{file}", "--split", "test"]),
}
# Examples per reader: each load of an int8 program takes a second, so it gets half.
EXAMPLES = {"int8 file": 6}


def _property(reader: str) -> Callable[..., None]:
    """The property for one reader, with its own example budget."""
    key, argv = READERS[reader]

    @settings(BOUNDED, max_examples=int(DEEP or EXAMPLES.get(reader, 12)))
    @given(broken=damage())
    def check(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: Damage
    ) -> None:
        def command(f: Path) -> list[str]:
            paths = {"file": f, "dir": f.parent, "image": files["image"], "ckpt": files["ckpt"]}
            return [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]

        _run_damaged(capsys, tmp_path, files[key], broken, command)

    return check


@pytest.mark.parametrize("reader", list(READERS))
def test_a_damaged_file(
    reader: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _property(reader)(files, tmp_path, capsys)
