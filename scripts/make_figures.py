"""Regenerate docs/figures/ (the paper's architecture figures, drawn from the models) and,
with --notebook, the stored outputs of docs/tutorial.ipynb.

    python scripts/make_figures.py              # docs/figures/*.svg
    python scripts/make_figures.py --notebook   # also run docs/tutorial.ipynb in place

Each figure is the `resnetlab plot … --diagram` command printed beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"

# (file stem, arguments of `resnetlab plot`): the paper's Fig. 2, 3 and 5, and the variants.
FIGURE_COMMANDS: list[tuple[str, list[str]]] = [
    ("fig3-vgg19-plain34-resnet34", ["vgg19", "plain34", "resnet34", "--diagram"]),
    ("fig2-fig5-left-basic-block", ["--block", "basic"]),
    ("fig5-right-bottleneck", ["--block", "bottleneck"]),
    ("cifar-plain20-resnet20", ["plain20", "resnet20", "--diagram"]),
    (
        "resnet50-resnext50-preact50",
        ["resnet50", "resnext50_32x4d", "preact_resnet50", "--diagram"],
    ),
    ("resnet1202-folded", ["resnet1202", "--diagram"]),
]


def make_figures() -> None:
    from resnetlab.cli import main

    FIGURES.mkdir(parents=True, exist_ok=True)
    for stem, args in FIGURE_COMMANDS:
        out = FIGURES / f"{stem}.svg"  # text stays text; `-o NAME.png` draws the same as PNG
        print("$ resnetlab plot", " ".join(args), "-o", out.relative_to(ROOT))
        if main(["plot", *args, "-o", str(out)]) != 0:
            raise SystemExit(f"failed: resnetlab plot {' '.join(args)}")


def run_notebook() -> None:
    """Execute docs/tutorial.ipynb in a kernel of this interpreter and store its outputs."""
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "docs" / "tutorial.ipynb"
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "kernels" / "resnetlab-venv"
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        kernel = {"argv": argv, "display_name": "resnetlab", "language": "python"}
        (spec / "kernel.json").write_text(json.dumps(kernel))
        import os

        os.environ["JUPYTER_PATH"] = tmp
        client = NotebookClient(
            nb,
            timeout=300,
            kernel_name="resnetlab-venv",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(ROOT)} with its outputs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notebook", action="store_true", help="also run the tutorial notebook")
    args = p.parse_args()
    make_figures()
    if args.notebook:
        run_notebook()


if __name__ == "__main__":
    main()
