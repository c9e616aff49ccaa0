"""The command line as a user types it: output, files, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from resnetlab.cli import main

COMMANDS = [
    "models",
    "summary",
    "compare",
    "params",
    "plot",
    "tour",
    "train",
    "eval",
    "predict",
    "export",
    "bench",
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's --help / usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, needle: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert needle in lines[0]


def test_resnet50_summary_as_torchinfo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "resnet50", "--input-size", "2", "3", "224", "224")
    assert code == 0
    assert "Total params: 25,557,032" in out
    assert "Total mult-adds (G): 7.72" in out
    assert "Stride placement: v1 (paper)" in out


def test_summary_options_and_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "summary", "resnet50", "--placement", "v1.5", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["totals"]["conv_linear_macs"] == 4_089_184_256  # torchvision's figure
    assert any("v1.5" in n for n in data["notes"])
    code, out, _ = run(capsys, "summary", "resnet20", "--depth", "1", "--format", "csv")
    assert out.splitlines()[0] == "name,type,depth,output_shape,params,mult_adds"
    target = tmp_path / "s.md"
    code, out, _ = run(
        capsys, "summary", "resnet20", "--set", "kernel_size=5", "--format", "md", "-o", str(target)
    )
    assert code == 0
    assert "Middle kernel size: 5×5" in target.read_text()


def test_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "resnet1*")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == [
        "resnet18",
        "resnet101",
        "resnet152",
        "resnet101_v1_5",
        "resnet152_v1_5",
        "resnet110",
        "resnet1202",
    ]
    code, out, _ = run(capsys, "models", "resnet2*", "--details", "--format", "json")
    assert json.loads(out)[0]["params"] == 269_722


def test_compare_and_params(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compare", "plain34", "resnet34", "--formulas")
    assert code == 0
    assert "21,797,672" in out
    assert "21,623,848" in out
    code, out, _ = run(capsys, "params", "resnet50", "--formulas")
    assert code == 0
    assert out.splitlines()[0].split() == ["conv1", "3×64×7×7", "=", "9,408"]
    assert "fc" in out
    assert "2048×1000 + 1000 = 2,049,000" in out
    assert out.strip().endswith("25,557,032")
    code, out, _ = run(capsys, "params", "resnet20")
    assert out.startswith("resnet20: 269,722 parameters")


def test_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png, svg = tmp_path / "r.png", tmp_path / "sweep.svg"
    assert run(capsys, "plot", "resnet50", "-o", str(png))[0] == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert run(capsys, "plot", "resnet20", "resnet56", "plain56", "-o", str(svg))[0] == 0
    assert "<svg" in svg.read_text()


def test_tour(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "tour", "--out", str(tmp_path))
    assert code == 0
    for expected in ("25,557,032", "260,160", "9,472", "73,856", "45,248", "57,728"):
        assert expected in out
    assert (tmp_path / "resnet50_stages.png").is_file()
    assert (tmp_path / "depth_sweep.png").is_file()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["summary", "resnt50"], "did you mean resnet50"),
        (["summary", "resnet50", "--input-size", "2", "x", "224", "224"], "positive integer"),
        (["summary", "resnet50", "--input-size", "2", "3", "0", "224"], "positive integer"),
        (["summary", "resnet50", "--input-size", "2", "4", "224", "224"], "does not fit"),
        (["summary", "resnet50", "--depth", "0"], "positive integer"),
        (["summary", "resnet20", "--set", "colour=red"], "has no option 'colour'"),
        (["summary", "resnet20", "--set", "kernel_size=4"], "odd"),
        (["summary", "resnet20", "--set", "oops"], "KEY=VALUE"),
        (["summary", "resnet20", "--format", "xml"], "invalid choice"),
        (["compare", "resnet20", "nope"], "unknown model 'nope'"),
        (["params", "vgg17"], "unknown model"),
        (["plot", "resnet20", "-o", "/nonexistent-dir/x.png"], "does not exist"),
        (["plot", "resnet20", "-o", "chart.jpg"], ".png or .svg"),
        (["plot", "resnet20", "resnet32", "--kind", "stages", "-o", "x.png"], "exactly one"),
        (["models", "nothing*"], "no model matches"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err, needle)


def test_unwritable_output_keeps_existing_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    existing = tmp_path / "table.txt"
    existing.write_text("precious")
    # An error before writing (unknown model) must not touch the file.
    code, out, err = run(capsys, "summary", "nope", "-o", str(existing))
    assert_one_line_error(code, out, err, "unknown model")
    assert existing.read_text() == "precious"
    folder = tmp_path / "adir"
    folder.mkdir()
    code, out, err = run(capsys, "summary", "resnet20", "-o", str(folder))
    assert_one_line_error(code, out, err, "is a folder")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "usage: resnetlab" in out


def test_console_script_and_module_entry_points() -> None:
    exe = Path(sys.executable).with_name("resnetlab")
    for cmd in ([str(exe)], [sys.executable, "-m", "resnetlab"]):
        if cmd[0] == str(exe) and not exe.exists():
            continue
        done = subprocess.run(
            [*cmd, "models", "vgg1*"], capture_output=True, text=True, check=False, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "vgg16_bn" in done.stdout
        bad = subprocess.run(
            [*cmd, "summary", "nope"], capture_output=True, text=True, check=False, timeout=120
        )
        assert bad.returncode == 2
        assert len(bad.stderr.strip().splitlines()) == 1


def test_a_bug_exits_1_with_its_traceback_in_a_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An exception that is not the user's (here a ZeroDivisionError planted in a command)
    is reported as a bug of resnetlab, exit 1, not as bad input (exit 2)."""
    import resnetlab.cli.inspection as cli

    def broken(args: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "cmd_models", broken)
    code, out, err = run(capsys, "models")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "bug of resnetlab" in lines[0] and "ZeroDivisionError: division by zero" in lines[0]
    written = sorted((tmp_path / "cache" / "errors").iterdir())
    assert len(written) == 1 and str(written[0]) in lines[0]
    text = written[0].read_text()
    assert "resnetlab models" in text and "Traceback" in text and "in broken" in text


def test_an_os_error_without_a_file_is_a_bug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bare OSError (no file, no errno a user can cause) is ours; one naming a file is the
    system refusing it: one line, exit 2."""
    import errno

    import resnetlab.cli.inspection as cli

    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "cmd_models", lambda args: (_ for _ in ()).throw(OSError("bad fd")))
    code, _, err = run(capsys, "models")
    assert code == 1 and "bug of resnetlab" in err
    named = OSError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    monkeypatch.setattr(cli, "cmd_models", lambda args: (_ for _ in ()).throw(named))
    code, out, err = run(capsys, "models")
    assert_one_line_error(code, out, err, "Permission denied")
