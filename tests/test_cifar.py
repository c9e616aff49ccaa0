"""CIFAR readers (both official layouts, written by ``cifar_writers``), safe unpickling and
the real download code against a local HTTP server on 127.0.0.1 (no other address is ever
contacted)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cifar_writers import write_cifar_binary, write_cifar_python
from conftest import http_server
from resnetlab.data import cifar
from resnetlab.data.cifar import download_file, load_cifar
from resnetlab.data.tensors import DataError, ImageTensors

WRITERS = {"python": write_cifar_python, "binary": write_cifar_binary}


def random_split(n: int, n_classes: int, seed: int) -> ImageTensors:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    return ImageTensors(images, labels, tuple(f"class_{i}" for i in range(n_classes)))


def make_dataset(name: str) -> tuple[ImageTensors, ImageTensors]:
    n_classes = 10 if name == "cifar10" else 100
    train = random_split(20, n_classes, seed=1)
    # Image 0 is pure red, image 1 pure blue: checks the R, G, B plane order on disk.
    train.images[0] = 0
    train.images[0, 0] = 255
    train.images[1] = 0
    train.images[1, 2] = 255
    return train, random_split(10, n_classes, seed=2)


def assert_same(got: ImageTensors, want: ImageTensors) -> None:
    assert got.images.dtype == torch.uint8
    assert got.images.shape == want.images.shape
    assert torch.equal(got.images, want.images)
    assert torch.equal(got.labels, want.labels)
    assert got.classes == want.classes


@pytest.mark.parametrize("layout", ["python", "binary"])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_round_trip(tmp_path: Path, name: str, layout: str) -> None:
    train, test = make_dataset(name)
    WRITERS[layout](tmp_path, name, train, test)
    data = load_cifar(name, tmp_path)
    assert set(data) == {"train", "test"}
    assert_same(data["train"], train)
    assert_same(data["test"], test)


@pytest.mark.parametrize("layout", ["python", "binary"])
def test_pixel_layout_on_disk(tmp_path: Path, layout: str) -> None:
    train, test = make_dataset("cifar10")
    WRITERS[layout](tmp_path, "cifar10", train, test)
    if layout == "python":
        with (tmp_path / "cifar-10-batches-py" / "data_batch_1").open("rb") as f:
            row = pickle.load(f, encoding="bytes")[b"data"][0]  # our own file: trusted
    else:
        raw = (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").read_bytes()
        assert raw[0] == int(train.labels[0])
        row = np.frombuffer(raw[1:3073], dtype=np.uint8)
    # The official record: 1024 red bytes, 1024 green, 1024 blue.
    assert (row[:1024] == 255).all()
    assert (row[1024:] == 0).all()
    red = load_cifar("cifar10", tmp_path)["train"].images[0]
    assert (red[0] == 255).all()
    assert (red[1:] == 0).all()
    blue = load_cifar("cifar10", tmp_path)["train"].images[1]
    assert (blue[2] == 255).all()
    assert (blue[:2] == 0).all()


@pytest.mark.parametrize("layout", ["python", "binary"])
def test_cifar100_coarse_labels(tmp_path: Path, layout: str) -> None:
    train, test = make_dataset("cifar100")
    coarse_of_fine = [(7 * i) % 20 for i in range(100)]
    coarse_names = [f"super_{j}" for j in range(20)]
    WRITERS[layout](
        tmp_path,
        "cifar100",
        train,
        test,
        coarse_of_fine=coarse_of_fine,
        coarse_classes=coarse_names,
    )
    data = load_cifar("cifar100", tmp_path, label_mode="coarse")
    mapping = torch.tensor(coarse_of_fine)
    for split, want in (("train", train), ("test", test)):
        assert torch.equal(data[split].images, want.images)
        assert torch.equal(data[split].labels, mapping[want.labels])
        assert data[split].classes == tuple(coarse_names)


def test_python_layout_preferred(tmp_path: Path) -> None:
    train, test = make_dataset("cifar10")
    write_cifar_python(tmp_path, "cifar10", train, test)
    other = replace(train, labels=torch.zeros_like(train.labels))
    write_cifar_binary(tmp_path, "cifar10", other, test)
    assert torch.equal(load_cifar("cifar10", tmp_path)["train"].labels, train.labels)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_cifar("mnist", tmp_path)
    with pytest.raises(DataError, match="only for cifar100"):
        load_cifar("cifar10", tmp_path, label_mode="coarse")
    with pytest.raises(DataError, match="label_mode"):
        load_cifar("cifar100", tmp_path, label_mode="medium")


# --- broken and hostile files -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "file"),
    [("cifar10", "data_batch_3.bin"), ("cifar100", "train.bin")],
)
def test_truncated_binary(tmp_path: Path, name: str, file: str) -> None:
    train, test = make_dataset(name)
    folder = write_cifar_binary(tmp_path, name, train, test)
    path = folder / file
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=file) as info:
        load_cifar(name, tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "file"), [("cifar10", "test_batch"), ("cifar100", "meta")])
def test_garbled_pickle(tmp_path: Path, name: str, file: str) -> None:
    train, test = make_dataset(name)
    folder = write_cifar_python(tmp_path, name, train, test)
    path = folder / file
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(DataError, match=file) as info:
        load_cifar(name, tmp_path)
    assert "\n" not in str(info.value)
    path.write_bytes(b"this is not a pickle at all\n" * 10)
    with pytest.raises(DataError, match=file):
        load_cifar(name, tmp_path)


def test_wrong_shape_in_pickle(tmp_path: Path) -> None:
    train, test = make_dataset("cifar10")
    folder = write_cifar_python(tmp_path, "cifar10", train, test)
    with (folder / "data_batch_2").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f, protocol=2)
    with pytest.raises(DataError, match="data_batch_2"):
        load_cifar("cifar10", tmp_path)


def test_missing_file_in_folder(tmp_path: Path) -> None:
    train, test = make_dataset("cifar10")
    folder = write_cifar_binary(tmp_path, "cifar10", train, test)
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match=r"data_batch_5\.bin not found"):
        load_cifar("cifar10", tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_without_download(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError) as info:
        load_cifar(name, tmp_path / "nowhere")
    msg = str(info.value)
    assert str(tmp_path / "nowhere") in msg
    assert "download=True" in msg
    assert cifar.SOURCES[name].python_dir in msg
    assert "\n" not in msg
    assert not (tmp_path / "nowhere").exists()  # nothing created without download


class SystemPayload:
    """Unpickling this with plain pickle would run ``touch path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


class PrintPayload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("PWNED",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_refused(
    tmp_path: Path, protocol: int, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = make_dataset("cifar10")
    folder = write_cifar_python(tmp_path, "cifar10", train, test)
    flag = tmp_path / "pwned"
    with (folder / "data_batch_1").open("wb") as f:
        pickle.dump({b"data": SystemPayload(flag), b"labels": []}, f, protocol=protocol)
    with pytest.raises(DataError, match=r"data_batch_1.*(posix|os)\.system.*not allowed"):
        load_cifar("cifar10", tmp_path)
    assert not flag.exists()

    write_cifar_python(tmp_path, "cifar10", train, test)  # restore the batches
    (folder / "test_batch").write_bytes(pickle.dumps(PrintPayload(), protocol=protocol))
    with pytest.raises(DataError, match=r"test_batch.*(__builtin__|builtins)\.print"):
        load_cifar("cifar10", tmp_path)
    assert "PWNED" not in capsys.readouterr().out
    # The same bytes through plain pickle do run the payload: the test above means something.
    pickle.loads((folder / "test_batch").read_bytes())
    assert "PWNED" in capsys.readouterr().out


def test_only_latin1_codec(tmp_path: Path) -> None:
    train, test = make_dataset("cifar10")
    folder = write_cifar_python(tmp_path, "cifar10", train, test)
    # GLOBAL _codecs.encode, then encode("x", "rot13"): allowed global, refused codec.
    bad = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    (folder / "batches.meta").write_bytes(bad)
    with pytest.raises(DataError, match=r"batches\.meta.*latin1"):
        load_cifar("cifar10", tmp_path)


# --- a pickle as Python 2 wrote the official files -------------------------------------------


def _py2_bytes(b: bytes) -> bytes:
    # SHORT_BINSTRING / BINSTRING: a Python 2 str, which encoding="bytes" turns into bytes.
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _py2_obj(obj: Any) -> bytes:
    if isinstance(obj, bytes):
        return _py2_bytes(obj)
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_obj(x) for x in obj) + b"e" if obj else b"]"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2_obj(k) + _py2_obj(v) for k, v in obj.items()) + b"u"
    assert isinstance(obj, np.ndarray)
    assert obj.dtype == np.uint8
    assert obj.ndim == 2
    dtype = (
        b"cnumpy\ndtype\n" + _py2_bytes(b"u1") + b"\x89\x88\x87R"
        b"(K\x03" + _py2_bytes(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_bytes(b"b")
        + b"\x87R(K\x01"
        + _py2_obj(obj.shape[0])
        + _py2_obj(obj.shape[1])
        + b"\x86"
        + dtype
        + b"\x89"
        + _py2_bytes(obj.tobytes())
        + b"tb"
    )


def py2_pickle(obj: dict[bytes, Any]) -> bytes:
    return b"\x80\x02" + _py2_obj(obj) + b"."


def test_reads_python2_pickles(tmp_path: Path) -> None:
    """The official files name numpy.core.multiarray and hold Python 2 strs."""
    train, test = make_dataset("cifar10")
    folder = write_cifar_python(tmp_path, "cifar10", train, test)
    for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        with (folder / f).open("rb") as fh:
            d = pickle.load(fh, encoding="bytes")  # our own file: trusted
        (folder / f).write_bytes(py2_pickle(d))
    data = load_cifar("cifar10", tmp_path)
    assert_same(data["train"], train)
    assert_same(data["test"], test)


# --- download from a local server ------------------------------------------------------------


@dataclass
class Served:
    """What the local server serves, and what it saw."""

    payload: bytes = b""
    honour_range: bool = True
    status: int = 200  # anything else: answered as an error, no body
    cut_at: int | None = None  # send only this many body bytes, then hang up
    ranges: list[str] = field(default_factory=list)
    requests: int = 0


def _handler(state: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            if state.status != 200:
                self.send_error(state.status)
                return
            body, start = state.payload, 0
            want = self.headers.get("Range")
            if want:
                state.ranges.append(want)
            if want and state.honour_range and want.startswith("bytes=") and want.endswith("-"):
                start = int(want[len("bytes=") : -1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            end = len(body) if state.cut_at is None else state.cut_at
            self.wfile.write(body[start:end])

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must not carry 127.0.0.1 requests elsewhere."""
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server(no_proxy: None) -> Iterator[tuple[str, Served]]:
    state = Served()
    with http_server(_handler(state)) as base:
        yield f"{base}/cifar-10-python.tar.gz", state


def build_archive(tmp_path: Path) -> tuple[bytes, ImageTensors, ImageTensors]:
    """A small tar.gz in the official python layout (``cifar-10-batches-py/...``)."""
    train, test = make_dataset("cifar10")
    src = tmp_path / "src"
    folder = write_cifar_python(src, "cifar10", train, test)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue(), train, test


def md5(b: bytes) -> str:
    return hashlib.md5(b, usedforsecurity=False).hexdigest()


def test_download_extract_load(
    tmp_path: Path, server: tuple[str, Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = server
    state.payload, train, test = build_archive(tmp_path)
    source = replace(cifar.SOURCES["cifar10"], url=url, md5=md5(state.payload))
    monkeypatch.setitem(cifar.SOURCES, "cifar10", source)
    root = tmp_path / "data"
    seen: list[tuple[int, int | None]] = []
    data = load_cifar("cifar10", root, download=True, progress=lambda d, t: seen.append((d, t)))
    assert_same(data["train"], train)
    assert_same(data["test"], test)
    assert (root / source.archive).read_bytes() == state.payload
    assert seen[-1] == (len(state.payload), len(state.payload))
    # Only the dataset folder and the archive: no temporary folder or .part left behind.
    assert sorted(p.name for p in root.iterdir()) == sorted([source.archive, source.python_dir])
    # Present now: a second call reads the folder without contacting the server.
    load_cifar("cifar10", root, download=True)
    assert state.requests == 1


def test_download_resumes(tmp_path: Path, server: tuple[str, Served]) -> None:
    url, state = server
    state.payload = os.urandom(300_000)
    dest = tmp_path / "file.tar.gz"
    half = len(state.payload) // 2
    part = tmp_path / "file.tar.gz.part"
    part.write_bytes(state.payload[:half])
    assert download_file(url, dest, md5=md5(state.payload)) == dest
    assert state.ranges == [f"bytes={half}-"]
    assert dest.read_bytes() == state.payload
    assert not part.exists()


def test_download_interrupted_then_resumed(tmp_path: Path, server: tuple[str, Served]) -> None:
    url, state = server
    state.payload, state.cut_at = os.urandom(200_000), 120_000
    dest = tmp_path / "file.tar.gz"
    part = tmp_path / "file.tar.gz.part"
    with pytest.raises(DataError, match=r"offline.*kept to resume"):
        download_file(url, dest, md5=md5(state.payload))
    assert part.read_bytes() == state.payload[:120_000]
    assert not dest.exists()
    state.cut_at = None
    download_file(url, dest, md5=md5(state.payload))
    assert state.ranges == ["bytes=120000-"]
    assert dest.read_bytes() == state.payload


def test_download_restarts_when_range_ignored(tmp_path: Path, server: tuple[str, Served]) -> None:
    url, state = server
    state.payload, state.honour_range = os.urandom(50_000), False
    dest = tmp_path / "file.tar.gz"
    (tmp_path / "file.tar.gz.part").write_bytes(b"stale bytes of another file")
    download_file(url, dest, md5=md5(state.payload))
    assert state.ranges  # asked, but got a 200: the .part was rewritten from zero
    assert dest.read_bytes() == state.payload


def test_download_part_already_complete(tmp_path: Path, server: tuple[str, Served]) -> None:
    url, state = server
    state.payload = os.urandom(10_000)
    dest = tmp_path / "file.tar.gz"
    (tmp_path / "file.tar.gz.part").write_bytes(state.payload)
    download_file(url, dest, md5=md5(state.payload))  # server answers 416
    assert dest.read_bytes() == state.payload


def test_download_checksum_mismatch(tmp_path: Path, server: tuple[str, Served]) -> None:
    url, state = server
    state.payload = os.urandom(20_000)
    dest = tmp_path / "file.tar.gz"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download_file(url, dest, md5="0" * 32)
    assert url in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "file.tar.gz.part").exists()


def test_download_http_error(tmp_path: Path, server: tuple[str, Served]) -> None:
    url, state = server
    state.status = 404
    with pytest.raises(DataError, match="HTTP 404") as info:
        download_file(url, tmp_path / "f.tar.gz", md5="0" * 32)
    assert url in str(info.value)
    assert not list(tmp_path.iterdir())


def test_download_offline(tmp_path: Path, no_proxy: None) -> None:
    # A port that was just free and is closed: the connection is refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    dest = tmp_path / "file.tar.gz"
    part = tmp_path / "file.tar.gz.part"
    part.write_bytes(b"partial")
    with pytest.raises(DataError, match="offline") as info:
        download_file(url, dest, md5="0" * 32, timeout=5)
    msg = str(info.value)
    assert url in msg
    assert "\n" not in msg
    assert part.read_bytes() == b"partial"  # kept for resuming
    assert not dest.exists()


def test_extract_refuses_unsafe_archive(
    tmp_path: Path, server: tuple[str, Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    state.payload = buf.getvalue()
    source = replace(cifar.SOURCES["cifar10"], url=url, md5=md5(state.payload))
    monkeypatch.setitem(cifar.SOURCES, "cifar10", source)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="cannot extract"):
        load_cifar("cifar10", root, download=True)
    assert not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == [source.archive]  # no half-extracted folder
