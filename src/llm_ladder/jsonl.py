"""Append-only JSON-lines files: the run directory's logs are written a line at a time as things are measured."""

from __future__ import annotations

import os
from pathlib import Path


def append_line(path: Path, line: str, sync: bool = True) -> None:
    """Append one line, flushed (a crash of this process loses nothing) and by default fsynced (nor does a crash
    of the machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        if sync:
            os.fsync(f.fileno())
