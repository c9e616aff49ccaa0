"""The images a folder-making script wants from CIFAR-10's JPEG rendition (a ``.tar.gz``)."""

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from PIL import Image

T = TypeVar("T")


def wanted_images(archive: Path, wanted: dict[str, T]) -> Iterator[tuple[T, Image.Image]]:
    """Each member of ``archive`` named in ``wanted`` (``cifar10-jpeg/<split>/<class>/NNNN.jpg``)
    with its value, decoded, in the archive's order; the archive is read once, up to the last
    one wanted. Exits with a message when some are not in it."""
    left = dict(wanted)
    with tarfile.open(archive) as tar:
        for member in tar:
            key = member.name.removeprefix("./")
            if key not in left:
                continue
            f = tar.extractfile(member)
            assert f is not None
            yield left.pop(key), Image.open(io.BytesIO(f.read()))
            if not left:
                return
    raise SystemExit(f"{len(left)} images not found in {archive}, e.g. {next(iter(left))}")
