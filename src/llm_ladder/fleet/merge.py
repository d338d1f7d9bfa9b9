"""A cell's outcome written into a run directory, as if the rung had been climbed there; then the run finished.

Spread mode merges every cell into the fleet's one run directory; each mode gives every node a run directory of
its own (`nodes/<name>/`). Either way the directory is an ordinary climb's (results.jsonl, results.json,
summary.md, logprobs/, suites/, logs/), so `ladder report`, `compare`, `serve` and `deploy` read it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_ladder.climb.climber import Climber
from llm_ladder.engines.base import EngineSet
from llm_ladder.fleet.connect import NodeInfo
from llm_ladder.fleet.scheduler import Outcome
from llm_ladder.models.store import ModelStore
from llm_ladder.outputs.results import RunDir, RungResult, RunSummary, public_config
from llm_ladder.outputs.summary import to_markdown
from llm_ladder.plan.schema import Plan


def fingerprint(node: NodeInfo, host: dict[str, Any]) -> dict[str, Any]:
    """What makes one node's numbers comparable with another's: its device and versions (host_info)."""
    device = {"device": f"{node.kind} ({node.devices} on the node)"}
    return {"name": node.name, "id": node.node_id, "address": node.address} | device | host


def merge(run_dir: RunDir, plan: Plan, outcome: Outcome) -> RungResult:
    """Append the cell's requests and rung record to `run_dir`, with its files; an unreachable or crashed cell
    becomes a rung record with that status and reason."""
    out, record = outcome.output, outcome.record
    if out is None or record.status == "unreachable":
        rung = plan.rung(record.rung)
        result = RungResult(name=rung.name, status="failed" if record.status == "failed" else "unreachable",
                            model=rung.model, config=public_config(rung), error=record.reason)  # fmt: skip
        result.node = fingerprint(outcome.node, {}) if record.node else None
    else:
        for rel, data in out.files.items():
            path = run_dir.path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for request in out.requests:
            run_dir.append("request", request)
        result = RungResult.model_validate(out.result)
        log = run_dir.path / "logs" / f"{result.name}.log"
        result.log_path = str(log) if log.is_file() else None
        result.node = fingerprint(outcome.node, out.host)
    run_dir.append("rung", result)
    return result


def latest_results(run_dir: RunDir, plan: Plan) -> list[RungResult]:
    """Each plan rung's last record, in plan order (a rung never climbed is left out)."""
    last = run_dir.last_rungs()
    return [last[r.name] for r in plan.rungs if r.name in last]


NODE_KEYS = ("name", "id", "address", "device")


def climbed_on(summary: RunSummary) -> dict[str, Any] | None:
    """The machine the rungs ran on, when they all ran on alike ones (same hardware and versions): the run's host.
    Otherwise None, and the driver's host stays (each rung keeps its own node)."""
    hosts = [
        {k: v for k, v in r.node.items() if k not in NODE_KEYS}
        for r in summary.rungs
        if r.node and r.node.get("hardware")
    ]
    alike = {json.dumps({k: h.get(k) for k in ("hardware", "packages", "cpus")}, sort_keys=True) for h in hosts}
    return hosts[0] if hosts and len(alike) == 1 else None


def finish(run_dir: RunDir, plan: Plan, models_dir: Path | None, notify: Any, baseline_pass: bool = True) -> RunSummary:
    """The climb's own end over the merged rungs: agreement, paired suites, greedy identity, the recommendation;
    results.json and summary.md written. A baseline pass (another engine's answers scored by the baseline's
    engine) runs here, on the driver's machine, as a single-machine climb would run it; not on the way out of a
    Ctrl-C (`baseline_pass=False`)."""
    climber = Climber(plan, run_dir, EngineSet(plan.engine), ModelStore(models_dir), notify=notify)
    summary = climber.new_summary()
    summary.rungs = latest_results(run_dir, plan)
    summary.host = climbed_on(summary) or summary.host
    summary = climber.finish(summary, baseline_pass)
    run_dir.write_summary(summary, to_markdown(summary))
    return summary
