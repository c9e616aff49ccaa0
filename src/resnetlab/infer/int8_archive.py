"""What a ``.pt2`` archive may hold before :func:`torch.export.load` is let near it.

``torch.export.load`` is not a safe loader, whatever a docstring says. Read in torch 2.13's
source (``torch/export/pt2_archive/_package.py``, ``torch/_export/serde/serialize.py``,
``torch/export/_unlift.py``), these parts of an archive run code of the file's choosing:

* a weight or constant whose payload config says ``use_pickle``: ``torch.load(weights_only=False)``;
* a constant stored as ``custom_obj_*`` (TorchBind) or ``opaque_obj_*`` (``pickle.loads``);
* the sample inputs (``data/sample_inputs/model.pt``): ``torch.load(weights_only=True)``, and
  when that fails, the same bytes again with ``weights_only=False``;
* legacy entries (``data/weights/model.pt``, and the pre-2.7 layout's ``serialized_*.pt``,
  tried when the new layout fails to load): the same fallback;
* ``data/aotinductor/…``: a compiled shared library, loaded into the process;
* a symbolic size's ``expr_str``: :func:`sympy.sympify`, which is Python's ``eval``;
* the program's ``guards_code``: compiled with ``exec`` by ``ExportedProgram.module()``;
* a graph node's ``target``: any attribute path under ``torch`` (``torch.os.system``), called
  when the program runs.

So :func:`check_archive` reads the archive's bytes once, in memory, and refuses it unless every
entry is one that :func:`torch.export.save` writes for a program that :mod:`quantize` makes:
tensors stored raw, sample inputs that load with ``weights_only=True``, sizes that are plain
sympy constructors, no guard code, and only operators from torch's operator namespaces. The
entries are read with torch's own zip reader (so the bytes checked are the bytes torch will
use), duplicated names are refused (two readers could pick different copies), and the caller
hands the same bytes, not the file again, to ``torch.export.load``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter
from typing import Any

import torch

# Every entry :func:`torch.export.save` writes for one program named "model" with extra files
# (the archive's root folder stripped, as torch's reader names them).
_ENTRY = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt|extra/resnetlab\.json"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+)"
)
_PAYLOADS = {  # config file → the payload files it may name
    "data/weights/model_weights_config.json": re.compile(r"weight_\d+"),
    "data/constants/model_constants_config.json": re.compile(r"tensor_\d+"),
}
# Operators a graph node may call: registered ops only (``torch.ops.<namespace>.<op>.<overload>``),
# and ``operator.getitem`` (how a graph unpacks an op's tuple result).
_TARGET = re.compile(
    r"torch\.ops\.(aten|prims|quantized_decomposed|quantized|onednn|torchao)\.\w+\.\w+"
    r"|_operator\.getitem"
)
# A symbolic size as torch writes it (sympy's ``srepr``: ``Symbol('s77', positive=True,
# integer=True)``): only these names, quoted symbol names, integers and punctuation. No dots,
# no underscores, no other names: ``sympify`` can then call nothing but these constructors.
_SYMPY_NAMES = frozenset(
    " ".join(
        (
            "Symbol Integer Rational Add Mul Pow Max Min Eq Ne Lt Le Gt Ge And Or Not",
            "True False positive integer nonnegative negative real finite",
            "FloorDiv ModularIndexing Mod PythonMod CleanDiv CeilDiv FloorToInt CeilToInt",
            "TruncToInt RoundToInt Identity",
        )
    ).split()
)
_SYMPY_TOKEN = re.compile(r"\s+|'[A-Za-z]\w{0,15}'|[A-Za-z]+|\d+|[(),=*+\-/]")


class ArchiveRefusedError(ValueError):
    """A ``.pt2`` with an entry that would run code, or that a program of ours never has."""


def check_archive(data: bytes) -> None:
    """Refuse (:class:`ArchiveRefusedError`, one line) anything in the ``.pt2`` bytes ``data`` that
    :func:`torch.export.load` would unpickle, exec, eval, dlopen or call unchecked."""
    names = _names(data)
    reader = torch._C.PyTorchFileReader(io.BytesIO(data))
    for config, payload in _PAYLOADS.items():
        if config in names:
            _check_payloads(config, json.loads(reader.get_record(config)), payload)
    _check_sample_inputs(reader.get_record("data/sample_inputs/model.pt"))
    _check_program(json.loads(reader.get_record("models/model.json")))


def _names(data: bytes) -> set[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        listed = z.namelist()
    twice = [n for n, k in Counter(listed).items() if k > 1]
    if twice:
        raise ArchiveRefusedError(f"the archive names {twice[0]!r} twice")
    roots = {n.split("/", 1)[0] for n in listed}
    if len(roots) != 1 or any("/" not in n for n in listed):
        raise ArchiveRefusedError("the archive is not one folder, as torch.export.save writes it")
    names = {n.split("/", 1)[1] for n in listed}
    for name in sorted(names):
        if not _ENTRY.fullmatch(name):
            raise ArchiveRefusedError(
                f"unexpected entry {name!r} (resnetlab's int8 files never have it)"
            )
    for needed in ("models/model.json", "data/sample_inputs/model.pt"):
        if needed not in names:
            raise ArchiveRefusedError(f"no {needed!r} in the archive")
    return names


def _check_payloads(config: str, parsed: Any, payload: re.Pattern[str]) -> None:
    entries = parsed.get("config") if isinstance(parsed, dict) else None
    if not isinstance(entries, dict):
        raise ArchiveRefusedError(f"{config} is not a payload config")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise ArchiveRefusedError(f"{fqn!r} in {config} is stored as a pickle")
        if not payload.fullmatch(str(meta.get("path_name"))) or meta.get("tensor_meta") is None:
            raise ArchiveRefusedError(f"{fqn!r} in {config} is not a tensor stored raw")


def _check_sample_inputs(raw: bytes) -> None:
    # torch tries exactly this first and falls back to an unsafe load only when it fails.
    try:
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # the safe unpickler's refusals have no one type
        raise ArchiveRefusedError(
            f"its sample inputs need an unsafe load ({type(err).__name__})"
        ) from None
    if not isinstance(loaded, tuple):
        raise ArchiveRefusedError("its sample inputs are not a tuple")


def _check_program(program: Any) -> None:
    if not isinstance(program, dict) or program.get("guards_code", []) != []:
        raise ArchiveRefusedError("the program carries guard code (run with exec by torch)")
    custom = program.get("graph_module", {}).get("graph", {}).get("custom_obj_values")
    if custom:
        raise ArchiveRefusedError("the program holds custom (TorchBind) objects")
    for key, value in _strings(program):
        if key == "target" and not _TARGET.fullmatch(value):
            raise ArchiveRefusedError(f"the program calls {value[:60]!r}, not an operator")
        if key == "expr_str" and not _plain_sympy(value):
            raise ArchiveRefusedError(f"a symbolic size is not plain: {value[:60]!r}")


def _strings(node: Any, key: str = "") -> Any:
    """Every (key, string) pair in a parsed JSON document, at any depth."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


def _plain_sympy(text: str) -> bool:
    pos = 0
    while pos < len(text):
        m = _SYMPY_TOKEN.match(text, pos)
        if m is None:
            return False
        token = m.group()
        if token[0].isalpha() and token not in _SYMPY_NAMES:
            return False
        pos = m.end()
    return len(text) <= 4096
