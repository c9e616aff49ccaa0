"""The int8 file (``.pt2``): :func:`torch.export.save`'s archive of a quantized program,
plus one JSON entry,
``resnetlab.json`` (:data:`FORMAT`, model name, classes, preprocessing, training config, the
per-layer report). This module owns writing it, reading it back (anything else is one
:class:`QuantizedFileError` line) and telling such a file by its name.

:func:`torch.export.load` unpickles, evals and execs parts of an archive (see
:mod:`~resnetlab.infer.int8_archive`), so the file is read once into memory, checked entry by
entry, and only then are the same bytes handed to torch.

:mod:`~resnetlab.infer.quantize` makes the program; :mod:`~resnetlab.infer.int8_checkpoint`
writes a checkpoint's.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from resnetlab.fileio import write_bytes_atomic
from resnetlab.infer.int8_archive import ArchiveRefusedError, check_archive
from resnetlab.runtime.checkpoint import CheckpointError

FORMAT = "resnetlab-int8/1"
META_ENTRY = "resnetlab.json"
SUFFIX = ".pt2"


class QuantizedFileError(CheckpointError):
    """A ``.pt2`` file that is not a readable resnetlab int8 program (one line, exit 2)."""


def save_quantized(
    program: torch.export.ExportedProgram, path: str | os.PathLike[str], meta: dict[str, Any]
) -> None:
    """Write ``program`` and ``meta`` (JSON-able) atomically as one ``.pt2`` archive."""
    buf = io.BytesIO()
    entry = json.dumps({"format": FORMAT, **meta})
    torch.export.save(program, buf, extra_files={META_ENTRY: entry})
    write_bytes_atomic(path, buf.getvalue())


def load_quantized(
    path: str | os.PathLike[str],
) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    """The program and its metadata; anything unreadable is a :class:`QuantizedFileError`."""
    from resnetlab.infer.quantize import torchao_pt2e

    torchao_pt2e()  # registers the quantize/dequantize ops the program calls
    data = _read(path)
    extra = {META_ENTRY: ""}
    try:
        check_archive(data)  # before torch sees a byte of it: nothing in the file runs
        program = torch.export.load(io.BytesIO(data), extra_files=extra)
        meta = json.loads(extra[META_ENTRY] or "{}")
    except ArchiveRefusedError as err:
        raise QuantizedFileError(
            f"{path}: refused, not loaded: {err}; resnetlab reads only the int8 programs "
            "`resnetlab quantize` writes"
        ) from None
    except (OSError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise QuantizedFileError(f"{path}: not a readable int8 program ({err})") from err
    except Exception as err:  # torch.export's deserializer has no one error type
        raise QuantizedFileError(
            f"{path}: not a readable int8 program ({type(err).__name__})"
        ) from err
    found = meta.get("format")
    if isinstance(found, str) and found.startswith("resnetlab-int8/") and found != FORMAT:
        raise QuantizedFileError(
            f"{path}: a resnetlab int8 file of format {found}; this version reads {FORMAT}"
        )
    if found != FORMAT:
        raise QuantizedFileError(f"{path}: a .pt2 program, but not a resnetlab int8 file")
    return program, meta


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:  # OSError (missing, unreadable): the CLI's one line
        data = f.read()
    if not data.startswith(b"PK\x03\x04"):
        raise QuantizedFileError(f"{path}: not a readable int8 program (not a zip archive)")
    return data


def is_quantized_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == SUFFIX
