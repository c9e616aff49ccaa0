"""Every command in the docs runs as written after the README's set-up (which puts
``resnetlab``, ``python`` and ``torchrun`` in ``.venv/bin/``, activating nothing), or says
what it needs (``needs a download``, ``needs a GPU``); the cheap ones are run here."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
TOOLS = ("resnetlab", "python", "python3", "torchrun", "pip", "pytest")
# Offline, data-free and quick (a few seconds each): run as written.
CHEAP = re.compile(r"\.venv/bin/resnetlab (models|summary|compare|params|weights)\b")


def commands() -> list[tuple[str, int, str]]:
    """``(file, line, command)`` of every command line in the docs' shell blocks (console
    blocks: the ``$`` lines; continuation lines joined)."""
    found: list[tuple[str, int, str]] = []
    for doc in DOCS:
        lang: str | None = None
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            line, start = lines[i], i + 1
            i += 1
            if line.lstrip().startswith("```"):
                lang = line.strip()[3:].strip() if lang is None else None
                continue
            if lang not in SHELL:
                continue
            text = line.strip()
            if lang == "console":
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            elif not text or text.startswith("#") or line.startswith((" ", "\t")):
                continue
            while text.endswith("\\") and i < len(lines):
                text = text[:-1] + " " + lines[i].strip()
                i += 1
            found.append((str(doc.relative_to(REPO)), start, text))
    return found


def test_no_docs_command_needs_an_activated_environment() -> None:
    bare = [
        f"{f}:{n}: {c[:70]}"
        for f, n, c in commands()
        if c.split(" ", 1)[0] in TOOLS or re.match(r"PYTHONPATH=\S+ python\b", c)
    ]
    assert bare == [], "\n".join(bare)


def test_no_inline_command_needs_an_activated_environment() -> None:
    """Commands quoted in prose and tables (`python benchmarks/…`, beside the numbers)."""
    inline = re.compile(r"`(?:PYTHONPATH=\S+ )?(?:python3?|torchrun) (?:benchmarks|scripts)/")
    bare = [
        f"{doc.relative_to(REPO)}:{n}"
        for doc in DOCS
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        if inline.search(line)
    ]
    assert bare == [], bare


def test_commands_that_need_the_network_say_so() -> None:
    unmarked = [
        f"{f}:{n}: {c[:70]}"
        for f, n, c in commands()
        if re.search(r"--data (cifar10|cifar100)\b", c)
        and "needs a download" not in c
        and "--download" not in c
    ]
    assert unmarked == [], "\n".join(unmarked)


def test_the_cheap_commands_run_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first through ``.venv/bin/resnetlab`` itself; the rest in this process, as
    ``resnetlab``'s ``main`` gets them from the shell (the console script is the same call,
    tests/test_cli.py runs it; a process each only added a second of start-up)."""
    if not (REPO / ".venv" / "bin" / "resnetlab").is_file():
        pytest.skip("no .venv: the README's set-up has not been run in this checkout")
    cheap = [(f, n, c) for f, n, c in commands() if CHEAP.match(c) and "<" not in c]
    assert len(cheap) >= 5  # the README's tour, at least
    monkeypatch.chdir(tmp_path)
    for i, (f, n, c) in enumerate(cheap):
        argv = shlex.split(c, comments=True)
        assert argv[0] == ".venv/bin/resnetlab", f"{f}:{n}: {c}"
        if i == 0:
            argv[0] = str(REPO / argv[0])
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            code, out, err = cli(capsys, *argv[1:])
        assert code == 0, f"{f}:{n}: {c}\n{err[-500:]}"
        assert out.strip(), f"{f}:{n}: printed nothing"


def test_the_small_training_commands_run_as_written(tmp_path: Path) -> None:
    """Training commands on the shipped sample with a per-class limit: a batch larger than
    the few images used to be an error (issue 31); they now run as written."""
    if not (REPO / ".venv" / "bin" / "resnetlab").is_file():
        pytest.skip("no .venv: the README's set-up has not been run in this checkout")
    small = [
        (f, n, c)
        for f, n, c in commands()
        if c.startswith(".venv/bin/resnetlab train ")
        and "--data sample" in c
        and "--limit-per-class" in c
        and "--epochs 1" in c
    ]
    assert any(f == "docs/training.md" and "optim.ema_decay" in c for f, _, c in small)
    for f, n, c in small:
        argv = shlex.split(c, comments=True)
        argv[0] = str(REPO / argv[0])
        argv += ["--out", str(tmp_path), "--no-test"]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert out.returncode == 0, f"{f}:{n}: {c}\n{out.stderr[-500:]}"
        assert "steps/epoch" in out.stdout + out.stderr, f"{f}:{n}"
