"""`ladder serve`: the chosen rung, served with exactly the configuration that was measured, until Ctrl-C."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llm_ladder.engines.base import Engine, Server
from llm_ladder.models.store import ModelStore, resolve_models
from llm_ladder.outputs.report import load_summary
from llm_ladder.plan.loading import load_plan
from llm_ladder.plan.schema import Plan, PlanError, Rung


@dataclass
class Choice:
    rung: Rung
    engine: str
    why: str


def _unmask(rung: Rung) -> Rung:
    """Results mask secret-looking environment values; serving needs the real ones, from this environment."""
    env = dict(rung.env)
    for key, value in rung.env.items():
        if value == "***":
            if key not in os.environ:
                raise PlanError(f"rung {rung.name!r} needs {key} in the environment (results keep it masked)")
            env[key] = os.environ[key]
    return rung.model_copy(update={"env": env})


def from_run(run_dir: Path, name: str | None) -> Choice:
    """The recommended rung of a finished climb, or the named one, as it was measured."""
    summary = load_summary(run_dir)
    wanted = name or (summary.recommendation.rung if summary.recommendation else None)
    if wanted is None:
        raise PlanError(f"{run_dir}: the climb recommended no rung; name one with --rung")
    result = next((r for r in summary.rungs if r.name == wanted), None)
    if result is None:
        raise PlanError(f"{run_dir} has no rung {wanted!r} (it has: {', '.join(r.name for r in summary.rungs)})")
    why = "recommended by the climb" if name is None else "named"
    rung = _unmask(Rung.model_validate(result.config))
    return Choice(rung, rung.engine or result.engine or summary.engine, f"{why}, from {run_dir}")


def from_plan(plan: Plan, name: str | None) -> Choice:
    if name is None:
        raise PlanError(f"plan {plan.name!r} has no measurements to recommend from: name a rung with --rung")
    rung = next((r for r in plan.rungs if r.name == name), None)
    if rung is None:
        raise PlanError(f"plan {plan.name!r} has no rung {name!r} (it has: {', '.join(r.name for r in plan.rungs)})")
    return Choice(rung, plan.engine_of(rung), f"from plan {plan.name}")


def choose(source: str | None, name: str | None) -> Choice:
    """A run directory (its recommendation), or a plan file or shipped plan name (a named rung)."""
    if source and (Path(source) / "results.json").is_file():
        return from_run(Path(source), name)
    return from_plan(load_plan(source), name)


def resolved(choice: Choice, store: ModelStore) -> Rung:
    plan = Plan(name="serve", engine=choice.engine, rungs=(choice.rung,))
    return resolve_models(plan, store)[choice.rung.name]


def example_request(server: Server) -> str:
    body = {"model": server.model_name, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64}
    return f"curl {server.base_url}/v1/chat/completions -H 'Content-Type: application/json' -d '{json.dumps(body)}'"


def serve_until_stopped(engine: Engine, rung: Rung, out: Path, notify: Callable[[str], None]) -> int:
    """Start the rung, wait until Ctrl-C / SIGTERM (or the engine exits), then stop it. Returns the exit code:
    0 when stopped by the user, 1 when the engine died."""
    server = engine.start(rung, rung.model, out)
    try:
        notify(f"serving [bold]{rung.name}[/bold] as {server.model_name!r} at {server.base_url}/v1")
        notify(f"try: {example_request(server)}")
        notify(f"check: ladder smoke --url {server.base_url}   (Ctrl-C stops the server; log: {server.log_path})")
        while server.process.exit_code is None:
            time.sleep(0.5)
        notify(f"[red]the engine exited with code {server.process.exit_code}; see {server.log_path}[/red]")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        report = engine.stop(server)
        how = "" if report.graceful else " (killed: it did not stop within the grace period)"
        notify(f"server stopped{how}" + (f"; {report.detail}" if report.detail else ""))
