"""What runs on a fleet node, as Ray tasks: climb one rung (a cell), reap what a lost cell left, describe the node.

These are plain functions, made Ray tasks by the scheduler, so they can be tested without Ray. A cell climbs in
a run directory of its own under the node's temp directory and sends back the rung's record, its requests and its
files; the driver merges them into the fleet's run directory, so nothing depends on a shared file system.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

from llm_ladder.engines.process import FLEET_CELL
from llm_ladder.engines.vllm import RUN_MARKER

LOCAL_ONLY = {"results.jsonl", "results.json", "summary.md"}
"""A cell's files that stay on the node: its rung and requests travel as records, the summary is the driver's."""


class CellOutput(BaseModel):
    result: dict[str, Any]
    """The rung's RungResult, as JSON."""
    requests: list[dict[str, Any]] = []
    """Its request records as results.jsonl holds them, without `type` and `time`."""
    files: dict[str, bytes] = {}
    """Every file it wrote, by path relative to the run directory: logprobs, suite items, engine logs, the load
    sweep, a llama.cpp reference's logits: what a single-machine climb would have in its run directory."""
    host: dict[str, Any] = {}
    notes: list[str] = []


def cells_root(run_id: str, cell_id: str | None = None) -> Path:
    """Where a fleet run's cells (or one of them) climb on a node, resolved as engines record it: the reaper looks
    for engines whose run directory is under it."""
    root = Path(tempfile.gettempdir()).resolve() / "ladder-fleet" / run_id
    return root / cell_id if cell_id else root


def climb_cell(plan_data: dict[str, Any], rung: str, run_id: str, cell_id: str) -> CellOutput:
    """Climb one rung of the plan on this node, exactly as `ladder climb --rung BASELINE --rung RUNG` would
    climb that rung; engines run under the parent guard and start offline (engines/process.py)."""
    from llm_ladder.climb.climber import Climber
    from llm_ladder.engines.base import EngineSet
    from llm_ladder.measure.roofline import Bandwidth
    from llm_ladder.models.store import ModelStore
    from llm_ladder.outputs.results import RunDir
    from llm_ladder.plan.schema import Plan

    os.environ[FLEET_CELL] = "1"
    plan = Plan.model_validate(plan_data)
    names = list(dict.fromkeys([plan.baseline.name, rung]))
    sub = plan.select(names)
    cell_dir = cells_root(run_id, cell_id)
    cell_dir.mkdir(parents=True)
    notes: list[str] = []
    try:
        climber = Climber(sub, RunDir(cell_dir), EngineSet(sub.engine), ModelStore(), notify=notes.append)
        climber.prepare()
        _check_pushed(climber.sources.values())
        assert climber.rungs is not None
        result = climber.climb_rung(sub.rung(rung), climber.rungs[rung])
        bandwidth = climber.bandwidth.model_dump() if isinstance(climber.bandwidth, Bandwidth) else None
        host = node_facts() | {"memory_bandwidth": bandwidth}
        return CellOutput(result=result.model_dump(mode="json"), requests=_requests(climber.run_dir, rung),
                          files=_files(cell_dir, rung), host=host, notes=notes)  # fmt: skip
    finally:
        shutil.rmtree(cell_dir, ignore_errors=True)


def _check_pushed(models: Any) -> None:
    """A model `ladder fleet push` copied here must still match its manifest (sizes: a cheap check per cell; the
    full sha256 was checked on arrival)."""
    from llm_ladder.fleet.push import verify_entry
    from llm_ladder.models.store import ModelError

    for model in set(models):
        problems = (
            [p for p in verify_entry(model) if not p.endswith("not in the manifest")] if Path(model).is_dir() else []
        )
        if problems:  # files an engine added (a conversion) are not the push's concern
            raise ModelError(f"{model} does not match its push manifest ({'; '.join(problems[:3])}): push it again")


def _requests(run_dir: Any, rung: str) -> list[dict[str, Any]]:
    drop = ("type", "time")
    return [{k: v for k, v in e.items() if k not in drop} for e in run_dir.events() if e.get("type") == "request"]


def _files(cell_dir: Path, rung: str) -> dict[str, bytes]:
    paths = sorted(p for p in cell_dir.rglob("*") if p.is_file() and str(p.relative_to(cell_dir)) not in LOCAL_ONLY)
    return {str(p.relative_to(cell_dir)): p.read_bytes() for p in paths}


def reap(run_id: str, cell_id: str | None = None, grace_s: float = 10.0) -> list[int]:
    """Stop every engine process on this node that a cell of `run_id` (or only `cell_id`) started and nobody
    stopped (its Ray worker was force-cancelled or died): found by the run directory in its environment. Returns
    their pids; the cells' directories are removed."""
    root = str(cells_root(run_id, cell_id)) + os.sep
    found = []
    for proc in psutil.process_iter():
        with suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(RUN_MARKER, "").startswith(root):
                found.append(proc)
    for proc in found:
        with suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(found, timeout=grace_s)
    for proc in alive:
        with suppress(psutil.Error):
            proc.kill()
    shutil.rmtree(cells_root(run_id, cell_id), ignore_errors=True)
    return [p.pid for p in found]


def node_facts() -> dict[str, Any]:
    """What makes this node's numbers comparable with another's: host_info, plus the versions of Ray and this tool
    and the GPU driver."""
    import ray

    from llm_ladder.climb.climber import host_info
    from llm_ladder.measure import nvml

    info: dict[str, Any] = host_info()
    info["packages"] = info["packages"] | {"ray": ray.__version__, "llm-ladder": _version("llm-ladder")}
    with suppress(nvml.Unavailable), nvml.session() as session:
        info["driver"] = session.driver()
    return info


def probe() -> dict[str, Any]:
    """This node for `ladder doctor --fleet`: node_facts, free memory, GPUs."""
    from llm_ladder.measure import nvml

    info = node_facts() | {"free_memory_gib": round(psutil.virtual_memory().available / 2**30, 1)}
    try:
        with nvml.session() as session:
            info["gpus"] = [_gpu(session, i) for i in range(len(session.handles))]
    except nvml.Unavailable as err:
        info["gpus"], info["gpu_note"] = [], str(err)
    return info


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _gpu(session: Any, index: int) -> dict[str, Any]:
    mem = session.memory(index)
    return {"index": index, "name": session.name(index), "free_gib": round(mem.free / 2**30, 1),
            "total_gib": round(mem.total / 2**30, 1)}  # fmt: skip
