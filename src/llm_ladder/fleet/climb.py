"""`ladder fleet climb`: a plan over the nodes of a Ray cluster, into run directories a single climb would write.

- `spread`: the rungs in parallel, one per free device, merged into one run directory (`OUT/`); agreement and
  greedy identity, which need the baseline, are computed once every rung is in.
- `each`: the whole plan on every selected node, one run directory per node (`OUT/nodes/<name>/`), and the fleet
  side by side (`fleet.json`, `fleet.md`: aggregate.py).
`cells.jsonl` says which node climbed which rung and how it ended; `--resume OUT` runs again only the cells that
did not end `ok`. `fleet-run.json` holds the run's plan (as selected) and settings: a resume climbs exactly those.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llm_ladder.fleet import FleetError
from llm_ladder.fleet.aggregate import FleetAggregate, aggregate
from llm_ladder.fleet.cells import (
    CellRecord,
    Mode,
    append_record,
    last_records,
    load_records,
    plan_cells,
    still_to_run,
)
from llm_ladder.fleet.connect import NodeInfo
from llm_ladder.fleet.merge import finish, merge
from llm_ladder.fleet.scheduler import Outcome, Scheduler
from llm_ladder.outputs.results import RunDir, RunSummary
from llm_ladder.plan.schema import Plan

SETTINGS = "fleet-run.json"


class FleetRun(BaseModel):
    plan: str
    plan_data: dict[str, Any]
    """The plan as the run began (after --rung and --trials): a resume climbs the same cells the same way."""
    mode: Mode
    nodes: list[str]
    """The nodes selected when the run began: a resume plans its cells over them (a lost node stays named)."""
    run_id: str
    cell_timeout_s: float


class FleetResult(BaseModel):
    settings: FleetRun
    cells: list[CellRecord]
    """Every cell's last record."""
    summaries: dict[str, RunSummary]
    """`spread`: {"fleet": the merged run}; `each`: one per node."""
    aggregate: FleetAggregate | None = None


def check_new(out: Path) -> None:
    """A new fleet run never writes into an existing run (checked before connecting to the cluster)."""
    if (out / SETTINGS).exists() or RunDir.exists(out):
        raise FleetError(f"{out} holds a run already: --resume {out} to continue it, or choose another --out")


def start(plan: Plan, nodes: list[NodeInfo], out: Path, mode: Mode, cell_timeout_s: float) -> FleetRun:
    check_new(out)
    run = FleetRun(
        plan=plan.name,
        plan_data=plan.model_dump(mode="json"),
        mode=mode,
        nodes=[n.name for n in nodes],
        cell_timeout_s=cell_timeout_s,
        run_id=f"{out.name[:40]}-{secrets.token_hex(3)}",
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / SETTINGS).write_text(run.model_dump_json(indent=2))
    return run


def resumed(out: Path, plan: Plan | None, mode: str | None, nodes: str | None) -> tuple[FleetRun, Plan]:
    """The run in `out` and its plan; a PLAN, --mode or --nodes given again must be what it began with."""
    try:
        run = FleetRun.model_validate_json((out / SETTINGS).read_text())
    except FileNotFoundError:
        raise FleetError(f"--resume {out}: no {SETTINGS} there (not a fleet run directory)") from None
    began = Plan.model_validate(run.plan_data)
    if plan is not None and plan.model_dump(mode="json") != run.plan_data:
        raise FleetError(f"--resume {out}: it began with another plan ({run.plan}, its rungs and trials as then "
                         "selected); resume without PLAN, --rung and --trials")  # fmt: skip
    if mode is not None and mode != run.mode:
        raise FleetError(f"--resume {out}: it runs in --mode {run.mode}, not {mode}")
    if nodes is not None:
        raise FleetError(f"--resume {out}: it runs on the nodes it began with ({', '.join(run.nodes)}); no --nodes")
    return run, began


def run_dir_of(out: Path, mode: Mode, node: str | None) -> RunDir:
    return RunDir(out if mode == "spread" or node is None else out / "nodes" / node)


def climb(
    plan: Plan, run: FleetRun, live: list[NodeInfo], out: Path, notify: Callable[[str], None], models_dir: Path | None
) -> FleetResult:
    """Climb every cell still to run on the live nodes among the run's; results.json and fleet.md are written at
    the end, or at Ctrl-C with what was done."""
    nodes = [n for n in live if n.name in run.nodes]
    cells = plan_cells(plan, run.mode, run.nodes)  # a node gone since keeps its cells: they end unreachable
    todo = still_to_run(cells, load_records(out), run.mode)
    notify(f"{len(todo)} of {len(cells)} cell(s) to climb on {len(nodes)} node(s): {', '.join(run.nodes)}")

    def on_outcome(outcome: Outcome) -> None:
        merge(run_dir_of(out, run.mode, outcome.record.node), plan, outcome)
        append_record(out, outcome.record)  # last: a cell recorded ok always has its rung merged
        r = outcome.record
        notify(f"{r.rung} on {r.node or '-'}: {r.status} ({r.seconds:.0f} s){f': {r.reason}' if r.reason else ''}")

    try:
        Scheduler(run.plan_data, nodes, run.run_id, on_outcome, notify, run.cell_timeout_s).run(todo)
    except BaseException:
        try:  # what was measured is written; no engine is started for a baseline pass on the way out
            conclude(plan, run, out, notify, models_dir, baseline_pass=False)
        except Exception as err:
            notify(f"the results so far are in {out}/cells.jsonl and results.jsonl; summaries failed: {err}")
        raise
    return conclude(plan, run, out, notify, models_dir)


def conclude(
    plan: Plan,
    run: FleetRun,
    out: Path,
    notify: Callable[[str], None],
    models_dir: Path | None,
    baseline_pass: bool = True,
) -> FleetResult:
    """Finish each run directory that has rungs, aggregate the devices (`each`), write fleet.json and fleet.md."""
    from llm_ladder.fleet.report import to_markdown

    records = last_records(load_records(out), run.mode)
    dirs = {"fleet": RunDir(out)} if run.mode == "spread" else {n: RunDir(out / "nodes" / n) for n in run.nodes}
    summaries = {name: finish(d, plan, models_dir, notify, baseline_pass) for name, d in dirs.items()
                 if RunDir.exists(d.path)}  # fmt: skip
    agg = aggregate(summaries) if run.mode == "each" and summaries else None
    result = FleetResult(settings=run, cells=records, summaries=summaries, aggregate=agg)
    data = {"settings": run.model_dump(), "cells": [c.model_dump() for c in records],
            "aggregate": agg.model_dump() if agg else None}  # fmt: skip
    (out / "fleet.json").write_text(json.dumps(data, indent=2))
    (out / "fleet.md").write_text(to_markdown(result))
    return result
