"""Headless Chromium for the tests that open a page we write (the model explorer, the
experiments' HTML report): one launch, one set of flags, one check of the screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs chromium and sets this, so that a missing browser fails the test there.
NEED_BROWSER = bool(os.environ.get("RESNETLAB_REQUIRE_BROWSER"))

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not NEED_BROWSER, reason="needs Debian's chromium (apt install chromium)"
)


def _flags(profile: Path) -> list[str]:
    # The closed network refuses Chromium's background connections: turn them off.
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
    ]


def _chromium() -> str:
    assert CHROMIUM is not None, "RESNETLAB_REQUIRE_BROWSER is set but chromium is missing"
    return CHROMIUM


def dump_dom(url: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """The page's DOM once its scripts ran (stdout), and the browser's log (stderr)."""
    return subprocess.run(
        [_chromium(), *_flags(profile), "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def screenshot_colours(url: str, profile: Path, width: int, height: int) -> int | None:
    """Render ``url`` at ``width``×``height`` and return how many colours the screenshot has
    (None: more than 65,536); asserts the screenshot has the window's size."""
    from PIL import Image

    shot = profile.parent / f"{profile.name}-shot.png"
    size = f"--window-size={width},{height}"
    subprocess.run(
        [_chromium(), *_flags(profile), f"--screenshot={shot}", size, url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as img:
        assert img.size == (width, height)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    return None if colours is None else len(colours)
