"""The data pipeline a run takes with ``augment="auto"``, chosen from the data's first image
(:func:`choose_pipeline`): photos get the ImageNet pipeline, small images pad-and-crop
(:class:`Pipeline`). The image is read for its header only (:func:`probe_side`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnetlab.data.augment import Augment
from resnetlab.data.folders import MAX_IMAGE_BYTES, FolderIndex, index_folder, is_archive
from resnetlab.data.images import IMAGE_SUFFIXES
from resnetlab.data.tensors import DataError
from resnetlab.errors import first_line

# The sources that are names, not paths (:func:`~resnetlab.data.datasets.load_data`).
SAMPLE = "sample"
CIFAR_NAMES = ("cifar10", "cifar100")


def probe_index_side(index: FolderIndex, tries: int = 20) -> int:
    """The larger side of the first readable image (a cheap header read), to size the data.
    Unreadable files are skipped here; decoding reports them (or fails, per ``on_error``)."""
    from PIL import Image, UnidentifiedImageError

    names = [name for items in index.splits.values() for name, _ in items[:tries]][:tries]
    first_error = ""
    for name in names:
        try:
            with Image.open(index.source / name) as im:
                return max(im.size)
        except UnidentifiedImageError:
            first_error = first_error or f"{name}: not an image Pillow can read"
        except (OSError, ValueError) as err:
            first_error = first_error or f"{name}: {first_line(err)}"
    raise DataError(
        f"{index.source}: none of the first {len(names)} images can be read ({first_error})"
    )


# Images up to this side are CIFAR-like (pad-and-crop); larger ones are photos.
SMALL_SIDE = 64
PHOTO_INPUT = 224  # a photo run's default input side (the ImageNet crop)


@dataclass(frozen=True)
class Pipeline:
    """The data pipeline a run takes, chosen from the first image (``augment="auto"``).

    Photos: stored with the shorter side at ``load_size`` (the centre square; 256 for a
    224 input, i.e. ``image_size / 0.875``), trained on random-resized crops + flips,
    evaluated on the centre crop. Small images (≤ :data:`SMALL_SIDE` px): stored as they
    are, pad-and-crop + flips (He et al. 2015 §4.2).
    """

    augment: Augment
    image_size: int | None
    load_size: int | None
    probed_side: int | None  # the larger side of the first image (None: a CIFAR name)

    def describe(self, interpolation: str = "bilinear") -> str:
        seen = f"first image {self.probed_side} px" if self.probed_side else "CIFAR"
        if self.augment == "imagenet":
            return (
                f"data pipeline: photos ({seen}) → ImageNet pipeline: stored at shorter side "
                f"{self.load_size} ({interpolation}, centre square); train random-resized crop "
                f"{self.image_size} + flip; eval centre crop {self.image_size}"
            )
        size = f", resized to {self.image_size}" if self.image_size else ""
        return f"data pipeline: small images ({seen}) → pad-and-crop + flip{size}"


def probe_side(source: str) -> int | None:
    """The larger side of the first readable image of a folder or archive (a header read);
    None for the CIFAR names and the shipped sample (32×32)."""
    from PIL import Image

    if source in CIFAR_NAMES or source == SAMPLE:
        return None
    path = Path(source).expanduser()
    if path.is_dir():
        return probe_index_side(index_folder(path))
    if is_archive(path):
        import io
        import tarfile

        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.size > MAX_IMAGE_BYTES:
                        continue  # not read (data/folders.py: loading reports it)
                    if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                        f = tar.extractfile(member)
                        with Image.open(io.BytesIO(f.read() if f else b"")) as im:
                            return max(im.size)
        except (tarfile.TarError, OSError, EOFError, ValueError):
            return None  # loading reports the archive's problem, in one line
    return None


def choose_pipeline(source: str, *, image_size: int | None, load_size: int | None) -> Pipeline:
    """Photos or small images, from ``source``'s first image (see :class:`Pipeline`)."""
    side = probe_side(source)
    if side is None or side <= SMALL_SIDE:
        return Pipeline("cifar", image_size, load_size, side)
    size = image_size or PHOTO_INPUT
    return Pipeline("imagenet", size, load_size or round(size / 0.875), side)
