"""Append-only JSON-lines files: the run directory's logs are written a line at a time as things are measured."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append_line(path: Path, line: str, sync: bool = True) -> None:
    """Append one line, flushed (a crash of this process loses nothing) and by default fsynced (nor does a crash
    of the machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        if sync:
            os.fsync(f.fileno())


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every whole record of a JSON-lines file (none if it does not exist); a last line cut short by a crash is
    skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
