"""Shared test helpers. Data from ../shared is optional: tests that need it skip cleanly."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURE = SHARED / "fixtures" / "torchvision_state_dicts.json"

# Under pytest-xdist each worker gets one thread: the workers already fill the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


# The costliest modules first (measured with --durations), and in each module its ``slow``
# tests first. Under scripts/test's ``--dist worksteal`` each worker starts on half of the
# queue and an idle worker takes half of what the other has left, from its end: so the
# long tests start early and the many short ones are what is left to share at the end,
# instead of a worker running a minute-long test alone while the other waits. A module's
# tests stay together, so that its module-scoped fixtures are built once a worker.
FIRST = (
    "test_distributed.py",
    "test_train.py",
    "test_faults.py",
    "test_bad_input.py",
    "test_benchmarks.py",
    "test_error_kinds.py",
    "test_bench_check.py",
    "test_cli.py",
    "test_docs_commands.py",
    "test_checkpoint.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    seen: dict[Path, int] = {}
    for item in items:
        seen.setdefault(item.path, len(seen))

    def order(item: pytest.Item) -> tuple[int, int, bool]:
        first = FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST)
        return first, seen[item.path], item.get_closest_marker("slow") is None

    items.sort(key=order)  # stable: the order within each group is kept


@pytest.fixture(scope="session")
def torchvision_fixture() -> dict[str, Any]:
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} not present (it lives in ../shared, beside the repository)")
    models: dict[str, Any] = json.loads(FIXTURE.read_text())["models"]
    return models


# The initialisers a model's constructor calls (torch's layers and our _init_weights).
_INITIALISERS = ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "ones_", "zeros_")


@contextlib.contextmanager
def _no_init_on_meta() -> Iterator[None]:
    """Initialisers skip meta tensors: there are no values to draw, yet on the meta device
    torch runs each random initialiser's Python reference (~4 ms a conv: 5 s for
    ResNet-1202). Shapes and counts do not depend on it."""
    originals = {n: getattr(torch.nn.init, n) for n in _INITIALISERS}

    def skipping(original: Any) -> Any:
        def init(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            return tensor if tensor.is_meta else original(tensor, *args, **kwargs)

        return init

    for n, original in originals.items():
        setattr(torch.nn.init, n, skipping(original))
    try:
        yield
    finally:
        for n, original in originals.items():
            setattr(torch.nn.init, n, original)


def meta_model(name: str, **overrides: Any) -> torch.nn.Module:
    """A registered model on the meta device: shapes and counts without weights."""
    from resnetlab.models import create_model

    with torch.device("meta"), _no_init_on_meta():
        return create_model(name, **overrides)


def session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder, shared by the pytest-xdist workers (each of which has
    its own ``BASETEMP/popen-gwN`` below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded-data caches go to a per-session temporary folder, never ~/.cache. The
    pytest-xdist workers share the session's: a dataset is decoded once, not once a worker
    (the cache's entries are written whole, so racing is safe)."""
    monkeypatch.setenv("RESNETLAB_CACHE", str(session_folder(tmp_path_factory) / "cache"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One thread for a module's tests: the CPU is shared, and two OpenMP threads contend
    badly on two cores (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``resnetlab ARGV`` in-process: (exit status, stdout, stderr)."""
    from resnetlab.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], folder: Path, argv: list[str], needle: str
) -> None:
    """``resnetlab ARGV``, run in the empty current ``folder``, is bad input: exit 2, nothing
    on stdout, one line on stderr holding ``needle``, and nothing written into ``folder``."""
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err
    assert list(folder.iterdir()) == []  # nothing half-written


def tiny_train(
    *extra: str, per_class: int = 5, batch: int = 10, precision: str = "fp32", test: bool = False
) -> list[str]:
    """The argv of ``resnetlab train`` for a paper-cifar ResNet-20 on ``per_class`` images
    per class of the shipped sample (a real checkpoint in seconds), then ``extra``;
    ``precision=""`` leaves the recipe's, ``test`` keeps the closing test evaluation."""
    argv = ["train", "--recipe", "paper-cifar", "--data", "sample"]
    argv += ["--limit-per-class", str(per_class), "--batch-size", str(batch)]
    argv += ["--precision", precision] if precision else []
    argv += [] if test else ["--no-test"]
    return [*argv, *extra]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of ``tiny_train("--epochs", "1")``: a real one-epoch ResNet-20, trained
    once a session, not once a test module (the xdist workers share it; the first to need it
    trains it under a file lock). Never change it: ``copy_run`` it into a test's folder."""
    from filelock import FileLock

    from resnetlab.cli import main

    root = session_folder(tmp_path_factory) / "tiny-run"
    with FileLock(f"{root}.lock"), pytest.MonkeyPatch.context() as m:
        if not (root / "trained").is_file():
            shutil.rmtree(root, ignore_errors=True)  # a session killed while training
            m.setenv("RESNETLAB_CACHE", str(session_folder(tmp_path_factory) / "cache"))
            assert main(tiny_train("--epochs", "1", "--out", str(root), "--name", "run")) == 0
            (root / "trained").touch()
    return root / "run"


def copy_run(run: Path, root: Path, name: str = "run") -> Path:
    """A copy of the run folder ``run`` as ``root/name`` (a resumed run continues where its
    checkpoint is, so the copy is a run of its own)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(run, root / name))


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights a training checkpoint holds."""
    from resnetlab.runtime.checkpoint import load_checkpoint

    state: dict[str, torch.Tensor] = load_checkpoint(path)["model"]
    return state


@contextlib.contextmanager
def http_server(handler: Any) -> Iterator[str]:
    """A local HTTP server on a free port (no internet needed) for the duration; yields its
    base URL, ``http://127.0.0.1:PORT``."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """What resnetlab logs (INFO and above) while the test runs, one message an item."""
    lines: list[str] = []
    logger, handler = logging.getLogger("resnetlab"), _Lines(lines)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)
