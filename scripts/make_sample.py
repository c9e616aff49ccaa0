"""Build the CIFAR-10 sample the package ships (src/resnetlab/data/sample/cifar10-sample.tar).

It copies, byte for byte, the first N files (sorted by name) of every class of each split
of the shared JPEG rendition, so the sample is a faithful slice of it:

    .venv/bin/python scripts/make_sample.py ../shared/data/cifar10-jpeg.tar.gz

The tar's entries have fixed metadata, so the same input gives the same file.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

PER_CLASS = {"train": 100, "test": 30}
OUT = Path(__file__).resolve().parents[1] / "src/resnetlab/data/sample/cifar10-sample.tar"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("archive", type=Path, help="the shared cifar10-jpeg.tar.gz")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()
    chosen: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
    with tarfile.open(args.archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for m in members:
            parts = PurePosixPath(m.name).parts
            if len(parts) != 4 or parts[1] not in PER_CLASS:
                continue
            split, cls = parts[1], parts[2]
            if len(chosen[split, cls]) < PER_CLASS[split]:
                f = tar.extractfile(m)
                assert f is not None
                chosen[split, cls].append((parts[3], f.read()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as out:
        for (split, cls), files in sorted(chosen.items()):
            for name, data in files:
                info = tarfile.TarInfo(f"cifar10-sample/{split}/{cls}/{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                out.addfile(info, io.BytesIO(data))
    tmp.replace(args.output)
    counts = {s: sum(len(v) for (sp, _), v in chosen.items() if sp == s) for s in PER_CLASS}
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB): {counts}")


if __name__ == "__main__":
    main()
