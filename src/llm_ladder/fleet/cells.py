"""The fleet's unit of work: a cell is one rung climbed on one node. What to run, what ran, what to run again.

`cells.jsonl` in the output directory gets one line per finished cell, flushed at once, as results.jsonl does for
a climb: `--resume` reads it and runs again only the cells whose last line is not `ok` (unreachable, failed, or
never finished because of a Ctrl-C).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from llm_ladder.outputs.jsonl import append_line, read_lines
from llm_ladder.plan.schema import Plan

Mode = Literal["spread", "each"]
CellStatus = Literal["ok", "failed", "unreachable"]
CELLS_FILE = "cells.jsonl"


class Cell(BaseModel):
    """A rung to climb, on one named node (`each`), or on whichever node has a device free (`spread`: None)."""

    model_config = ConfigDict(frozen=True)

    rung: str
    node: str | None = None

    def label(self) -> str:
        return f"{self.rung}@{self.node}" if self.node else self.rung


class CellRecord(BaseModel):
    rung: str
    node: str | None
    """The node that climbed it (None: no node was ever given it)."""
    node_id: str | None = None
    status: CellStatus
    reason: str | None = None
    seconds: float = 0.0
    time: str = ""

    def cell(self, mode: Mode) -> Cell:
        return Cell(rung=self.rung, node=self.node if mode == "each" else None)


def plan_cells(plan: Plan, mode: Mode, nodes: list[str]) -> list[Cell]:
    """`spread`: every rung once; `each`: every rung on every named node, node by node."""
    if mode == "spread":
        return [Cell(rung=r.name) for r in plan.rungs]
    return [Cell(rung=r.name, node=n) for n in nodes for r in plan.rungs]


def append_record(out: Path, record: CellRecord) -> None:
    record.time = record.time or datetime.now(UTC).isoformat()
    out.mkdir(parents=True, exist_ok=True)
    append_line(out / CELLS_FILE, json.dumps(record.model_dump(mode="json")))


def load_records(out: Path) -> list[CellRecord]:
    path = out / CELLS_FILE
    return [CellRecord.model_validate(line) for line in read_lines(path)] if path.is_file() else []


def last_records(records: list[CellRecord], mode: Mode) -> list[CellRecord]:
    """Each cell's last record: how it stands after every resume."""
    return list({r.cell(mode): r for r in records}.values())


def still_to_run(cells: list[Cell], records: list[CellRecord], mode: Mode) -> list[Cell]:
    """The cells whose last record is not ok, in plan order."""
    last = {r.cell(mode): r.status for r in records}
    return [c for c in cells if last.get(c) != "ok"]
