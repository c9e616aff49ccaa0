"""A small grayscale image folder for a transfer experiment, from CIFAR-10's JPEG rendition.

Four of CIFAR-10's animal classes (cat, deer, dog, horse), every image converted to 8-bit
grey (PIL mode ``L``, ITU-R 601-2 luma) and saved as a PNG at its 32×32 size, in
``<out>/{train,val,test}/<class>/`` (docs/finetune.md, section 6):

    python scripts/make_cifar_grey_folder.py [ARCHIVE] [OUT] [TRAIN VAL TEST]

All images come from CIFAR-10's **test** split (cifar10-jpeg/test/<class>/NNNN.jpg), which
the published CIFAR-10 checkpoints were not trained on: per class, test images 0000 to
TRAIN-1 are our train split, the next VAL our val split, the next TEST our test split
(defaults 250, 100, 250: 1,000 / 400 / 1,000 images). No image is in two splits.
"""

import sys
from pathlib import Path

from _cifar_archive import wanted_images

ARCHIVE = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/cifar10-jpeg.tar.gz")
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "grey4")
COUNTS = [int(n) for n in sys.argv[3:6]] if len(sys.argv) > 3 else [250, 100, 250]
CLASSES = ("cat", "deer", "dog", "horse")
if len(COUNTS) != 3 or sum(COUNTS) > 1000:
    raise SystemExit("TRAIN VAL TEST: three counts per class, 1,000 at most in all")

bounds = {"train": (0, COUNTS[0]), "val": (COUNTS[0], COUNTS[0] + COUNTS[1])}
bounds["test"] = (bounds["val"][1], bounds["val"][1] + COUNTS[2])
wanted = {
    f"cifar10-jpeg/test/{cls}/{i:04d}.jpg": (split, cls, i)
    for split, (lo, hi) in bounds.items()
    for cls in CLASSES
    for i in range(lo, hi)
}
for (split, cls, i), image in wanted_images(ARCHIVE, wanted):
    folder = OUT / split / cls
    folder.mkdir(parents=True, exist_ok=True)
    image.convert("L").save(folder / f"{cls}{i:04d}.png")
print(sum(1 for _ in OUT.rglob("*.png")), "images in", OUT)
