"""Append-only JSON-lines files: the run directory's logs are written a line at a time as things are measured."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO


class CorruptLog(ValueError):
    """A line other than a crash-truncated last one is not JSON: the file was edited or damaged."""


def append_line(path: Path, line: str, sync: bool = True) -> None:
    """Append one line, flushed (a crash of this process loses nothing) and by default fsynced (nor does a crash
    of the machine). A last line a crash cut short is dropped first, so the new record starts a line of its own
    and only ever the last line can be partial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as f:
        _drop_partial_tail(f)
        f.write(line.encode() + b"\n")
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _drop_partial_tail(f: BinaryIO) -> None:
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return
    f.seek(end - 1)
    if f.read(1) == b"\n":
        return
    f.seek(0)
    data = f.read()
    keep = data.rfind(b"\n") + 1  # 0 when the only line is partial
    try:
        json.loads(data[keep:])
    except ValueError:  # cut short: not a record
        f.truncate(keep)
        f.seek(keep)
        return
    f.write(b"\n")  # a whole record someone wrote without its newline: keep it


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file (none if it does not exist). A last line cut short by a crash (no
    newline after it) is skipped; any other line that is not JSON raises CorruptLog naming the file and line."""
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # after the last newline: a record the crash did not finish
                continue
            raise CorruptLog(f"{path}: line {number} is not JSON ({err.msg}); the log was edited or damaged") from None
    return records
