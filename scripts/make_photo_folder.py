"""A small synthetic photo folder: two classes (a bright disc or a bright square on a
textured background), images of many sizes and modes, train/ and val/ subfolders.

    python scripts/make_photo_folder.py [OUT] [TRAIN VAL]

TRAIN and VAL images per class (default 16 and 6: 44 images) in OUT (default photos)."""

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

random.seed(0)
root = Path(sys.argv[1] if len(sys.argv) > 1 else "photos")
counts = [int(n) for n in sys.argv[2:4]] if len(sys.argv) > 2 else [16, 6]
if len(counts) != 2 or min(counts) < 1:
    raise SystemExit("TRAIN VAL: two counts per class, each 1 or more")
modes = ["RGB", "RGB", "L", "RGBA", "P", "CMYK"]
for split, n in zip(("train", "val"), counts, strict=True):
    for cls in ("disc", "square"):
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = random.randint(140, 320), random.randint(120, 300)
            bg = tuple(random.randint(20, 110) for _ in range(3))
            im = Image.effect_noise((w, h), 40).convert("RGB")
            im = Image.blend(im, Image.new("RGB", (w, h), bg), 0.6)
            d = ImageDraw.Draw(im)
            s = random.randint(min(w, h) // 5, min(w, h) // 3)
            x, y = random.randint(0, w - s), random.randint(0, h - s)
            colour = tuple(random.randint(200, 255) for _ in range(3))
            (d.ellipse if cls == "disc" else d.rectangle)((x, y, x + s, y + s), fill=colour)
            im = im.filter(ImageFilter.GaussianBlur(1))
            mode = modes[i % len(modes)]
            out = im.convert(mode)
            ext = "png" if mode in ("RGBA", "P", "L") else "jpg"
            out.save(folder / f"{cls}{i:02d}.{ext}")
print(sum(1 for _ in root.rglob("*.*")), "images")
