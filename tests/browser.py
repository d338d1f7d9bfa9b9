"""Opening a report in a real browser: headless Chromium (the Debian package; scripts/test.sh installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from PIL import Image


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def _run(page: Path, *args: str) -> subprocess.CompletedProcess:
    exe = chromium()
    assert exe, "Chromium is not installed (scripts/test.sh installs the Debian package)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--log-level=0"]
    return subprocess.run(
        [exe, *flags, *args, page.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=True
    )


def open_report(page: Path, screenshot: Path) -> tuple[str, list[str]]:
    """The DOM after rendering, and every console message the page produced (errors included)."""
    dom = _run(page, "--dump-dom")
    shot = _run(page, f"--screenshot={screenshot}", "--window-size=1300,5000", "--hide-scrollbars")
    console = [line for line in (dom.stderr + shot.stderr).splitlines() if re.search(r":CONSOLE[:(]", line)]
    return dom.stdout, console


def painted_share(screenshot: Path) -> tuple[float, int]:
    """Share of non-white pixels, and how many distinct colours: charts are colourful, a blank page is not."""
    image = Image.open(screenshot).convert("RGB").resize((325, 1250))
    pixels = [image.getpixel((x, y)) for y in range(image.height) for x in range(image.width)]
    return sum(p != (255, 255, 255) for p in pixels) / len(pixels), len(set(pixels))
