"""No ``.pt2`` runs code, and no ``.onnx`` reads other files, when eval, predict or bench
load them.

Each case plants a payload where ``torch.export.load`` (torch 2.13) unpickles, evals, execs or
calls what the file says; the payload creates a marker file. Where the plain torch loader can
be shown to run it, the test first shows that (so the payload is real), then that resnetlab's
commands refuse the file in one line, exit 2, and the marker never appears.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import cli
from resnetlab.infer.int8_archive import ArchiveRefusedError, check_archive
from resnetlab.infer.int8_file import load_quantized, save_quantized
from resnetlab.infer.quantize import quantize_program
from resnetlab.models import create_model

pytest.importorskip("torchao")

Entries = dict[str, bytes]


class Payload:
    """Unpickling this opens (creates) ``marker``: code of the file's choosing ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real int8 program of a random ResNet-20, as ``quantize`` writes it."""
    torch.manual_seed(0)
    program = quantize_program(create_model("resnet20").eval(), torch.randn(4, 3, 32, 32))
    path = tmp_path_factory.mktemp("pt2") / "good.pt2"
    meta = {"model": "resnet20", "classes": [str(i) for i in range(10)]}
    save_quantized(program, path, meta)
    return path


def _entries(path: Path) -> tuple[str, Entries]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        root = names[0].split("/", 1)[0]
        return root, {n.split("/", 1)[1]: z.read(n) for n in names}


def _write(path: Path, root: str, entries: Entries, extra: list[tuple[str, bytes]] = ()) -> Path:  # type: ignore[assignment]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in [*entries.items(), *extra]:
            z.writestr(f"{root}/{name}", data)
    return path


def _torch_save(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _sample_inputs(e: Entries, marker: Path) -> None:
    e["data/sample_inputs/model.pt"] = _torch_save(((Payload(marker),), {}))


def _pickled_weight(e: Entries, marker: Path) -> None:
    key = "data/weights/model_weights_config.json"
    config = json.loads(e[key])
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    e[key] = json.dumps(config).encode()
    e[f"data/weights/{meta['path_name']}"] = _torch_save(Payload(marker))


def _opaque_constant(e: Entries, marker: Path) -> None:
    key = "data/constants/model_constants_config.json"
    config = json.loads(e[key])
    config["config"]["evil"] = {
        "path_name": "opaque_obj_0",
        "is_param": False,
        "use_pickle": True,
        "tensor_meta": None,
    }
    e[key] = json.dumps(config).encode()
    e["data/constants/opaque_obj_0"] = pickle.dumps(Payload(marker))


def _sympy_eval(e: Entries, marker: Path) -> None:
    text = e["models/model.json"].decode()
    symbol = "Symbol('s77', positive=True, integer=True)"
    assert symbol in text, "the program's batch symbol moved: update the test"
    evil = f"__import__('builtins').open({str(marker)!r}, 'w') and {symbol}"
    e["models/model.json"] = text.replace(json.dumps(symbol)[1:-1], json.dumps(evil)[1:-1]).encode()


def _guard_code(e: Entries, marker: Path) -> None:
    program = json.loads(e["models/model.json"])
    program["guards_code"] = [f"open({str(marker)!r}, 'w') is not None"]
    e["models/model.json"] = json.dumps(program).encode()


def _os_target(e: Entries, marker: Path) -> None:
    program = json.loads(e["models/model.json"])
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    e["models/model.json"] = json.dumps(program).encode()


# (name, how to plant it, whether plain torch.export.load + .module() + a call runs it)
CASES = [
    ("sample inputs unpickled unsafely", _sample_inputs, True),
    ("a weight flagged use_pickle", _pickled_weight, True),
    ("an opaque constant (pickle.loads)", _opaque_constant, True),
    ("a symbolic size evaluated by sympify", _sympy_eval, True),
    ("guard code exec'd by .module()", _guard_code, True),
    ("a graph node calling torch.os.system", _os_target, False),
]


def _plain_torch_runs(path: Path) -> None:
    """What torch alone does with the file: load, unlift, run once."""
    try:
        program = torch.export.load(path)
        program.module()(torch.zeros(1, 3, 32, 32))
    except Exception:
        pass  # the payload ran (or not) before whatever failed


@pytest.mark.parametrize(("case", "plant", "torch_runs_it"), CASES, ids=[c[0] for c in CASES])
def test_a_planted_payload_never_runs(
    good_pt2: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    plant: Callable[[Entries, Path], None],
    torch_runs_it: bool,
) -> None:
    marker = tmp_path / "code-ran"
    root, entries = _entries(good_pt2)
    plant(entries, marker)
    bad = _write(tmp_path / "crafted.pt2", root, entries)
    if torch_runs_it:
        _plain_torch_runs(bad)
        assert marker.exists(), f"{case}: the planted payload is not real (torch did not run it)"
        marker.unlink()
        capsys.readouterr()  # torch's own log lines
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32), (120, 30, 200)).save(image)
    commands = [["eval", str(bad), "--data", "sample"], ["predict", str(bad), str(image)]]
    for argv in [*commands, ["bench", str(bad)]]:
        code, out, err = cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert err.count("\n") == 1 and "refused, not loaded" in err, err
        assert not marker.exists(), f"{case}: code ran in `resnetlab {argv[0]}`"


def test_an_aot_compiled_library_is_refused_before_loading(good_pt2: Path, tmp_path: Path) -> None:
    root, entries = _entries(good_pt2)
    extra = [("data/aotinductor/model/model.so", b"\x7fELF" + bytes(64))]
    bad = _write(tmp_path / "aoti.pt2", root, entries, extra)
    with pytest.raises(ArchiveRefusedError, match="entry 'data/aotinductor/model/model.so'"):
        check_archive(bad.read_bytes())


def test_an_entry_named_twice_is_refused(good_pt2: Path, tmp_path: Path) -> None:
    # Two readers of one zip may pick different copies: the checked one must be the loaded one.
    root, entries = _entries(good_pt2)
    extra = [("data/sample_inputs/model.pt", _torch_save(((Payload(tmp_path / "m"),), {})))]
    with pytest.warns(UserWarning, match="Duplicate name"):
        bad = _write(tmp_path / "twice.pt2", root, entries, extra)
    with pytest.raises(ArchiveRefusedError, match="twice"):
        check_archive(bad.read_bytes())
    assert not (tmp_path / "m").exists()


def test_the_legacy_layout_is_refused(good_pt2: Path, tmp_path: Path) -> None:
    # torch retries a failed load as the pre-2.7 layout, whose .pt entries it loads unsafely.
    root, entries = _entries(good_pt2)
    legacy = {"version": b"8.20", "serialized_state_dict.pt": _torch_save(Payload(tmp_path / "m"))}
    with pytest.raises(ArchiveRefusedError):
        check_archive(_write(tmp_path / "legacy.pt2", root, legacy).read_bytes())
    assert not (tmp_path / "m").exists()


def test_a_program_of_ours_still_loads(good_pt2: Path) -> None:
    program, meta = load_quantized(good_pt2)
    assert meta["model"] == "resnet20"
    out = program.module()(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_an_onnx_file_cannot_read_a_file_outside_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ONNX has no code to run, but its tensors may live in "external data" files the model
    names: a crafted model names a file outside its folder to read it into a tensor."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"SECRET!!")
    (tmp_path / "model").mkdir()
    weight = helper.make_tensor("w", TensorProto.UINT8, [8], vals=[0] * 8)
    weight.ClearField("int32_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "8")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    out = helper.make_tensor_value_info("y", TensorProto.UINT8, [8])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [], [out], [weight]
    )
    path = tmp_path / "model" / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    code, stdout, err = cli(capsys, "predict", str(path), str(image))
    assert code == 2 and err.count("\n") == 1, err
    assert "external data" in err and "SECRET" not in stdout + err


def test_a_checkpoint_with_pickled_code_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Our own ``.pt`` loader (eval, predict, export, quantize, --resume) reads with
    ``weights_only=True``, passed explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot
    turn it off."""
    marker = tmp_path / "code-ran"
    path = tmp_path / "best.pt"
    torch.save({"model": create_model("resnet20").state_dict(), "x": Payload(marker)}, path)
    with pytest.MonkeyPatch.context() as m:
        m.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        export = ["export", str(path), "-o", str(tmp_path / "m.safetensors")]
        for argv in (["eval", str(path), "--data", "sample"], export):
            code, _, err = cli(capsys, *argv)
            assert code == 2 and err.count("\n") == 1, err
            assert "would run code" in err, err
            assert not marker.exists()
