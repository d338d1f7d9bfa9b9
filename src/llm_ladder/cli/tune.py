"""`ladder tune`: search beyond the fixed ladder, inside the quality budget (the library: llm_ladder.tune)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from llm_ladder.cli.common import ModelsDir, app, console, fail, interrupt_on_sigterm, report_or_reason
from llm_ladder.cli.plan import machine_plan
from llm_ladder.engines.base import EngineError, EngineSet
from llm_ladder.models.store import ModelError, ModelStore
from llm_ladder.outputs.results import default_run_dir
from llm_ladder.plan.hardware import detect
from llm_ladder.plan.loading import load_plan
from llm_ladder.plan.schema import PlanError
from llm_ladder.quality.suites import SuiteError
from llm_ladder.tune.space import load_space
from llm_ladder.tune.study import describe
from llm_ladder.tune.trials import TrialRecord, TuneObjective


class TuneProgress:
    """Trial n of N, the best so far, and the time left (the mean of the trials so far × the trials left)."""

    def __init__(self, budget: int, confirm: int) -> None:
        self.budget, self.confirm, self.started = budget, confirm, time.monotonic()
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console)
        self.task = self.bar.add_task(f"trial 1 of {budget}", total=budget)

    def on_trial(self, record: TrialRecord, used: int, best: TrialRecord | None) -> None:
        mark = "[green]feasible[/green]" if record.feasible else f"[yellow]{'; '.join(record.why_not)[:160]}[/yellow]"
        score = f"{record.score:.1f}" if record.score is not None else "—"
        console.print(
            f"trial {record.number} ({record.kind}) {describe(record.params)}: {score} {mark}",
            highlight=False,
            soft_wrap=True,
        )
        elapsed = time.monotonic() - self.started
        left = elapsed / max(used, 1) * max(self.budget - used + self.confirm, 0)
        lead = f"best {best.score:.1f} (trial {best.number})" if best and best.score else "no feasible trial yet"
        self.bar.update(
            self.task,
            completed=used,
            description=f"trial {min(used + 1, self.budget)} of {self.budget} · {lead} · ~{left / 60:.0f} min left",
        )


@app.command()
def tune(
    plan: Annotated[
        str | None, typer.Argument(help="Plan file or shipped plan name (default: `ladder plan auto`).")
    ] = None,
    budget_trials: Annotated[int, typer.Option(min=1, help="Trials that start an engine (plan rungs first).")] = 12,
    objective: Annotated[TuneObjective, typer.Option(help="What to optimize.")] = "decode_tps_long",
    slo: Annotated[str | None, typer.Option(help="Hard limits, p99 milliseconds: ttft=500,tpot=50.")] = None,
    space: Annotated[Path | None, typer.Option(help="Search space YAML (default: shipped for the engine).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<timestamp>-tune-<plan>).")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the tune in RUN_DIR (its plan, space, objective).")
    ] = None,
    write_plan: Annotated[Path | None, typer.Option(help="Write the plan with the winner as rung `tuned`.")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Repeats per trial (plan default 3).")] = None,
    models_dir: ModelsDir = None,
) -> None:
    """Search engine settings beyond the fixed ladder for the fastest config inside the quality budget."""
    from llm_ladder.tune.run import TuneConfig, TuneRun, parse_slo, read_config

    try:
        if resume:
            config = read_config(resume)
            config = config.model_copy(update={"budget": max(config.budget, budget_trials)})
        else:
            the_plan = (load_plan(plan) if plan else machine_plan(None, models_dir)).select(trials=trials)
            the_space, source = load_space(space, the_plan.engine, detect().gpu is not None)
            config = TuneConfig(
                plan=the_plan,
                space=the_space,
                space_source=source,
                objective=objective,
                slo=parse_slo(slo),
                budget=budget_trials,
                started_at=datetime.now(UTC).isoformat(),
            )
        run_path = resume or out or default_run_dir(f"tune-{config.plan.name}")
        engines = EngineSet(config.plan.engine)
        engines.get(config.plan.engine)  # preflight before anything starts
        run = TuneRun(config, run_path, engines, ModelStore(models_dir), console.print)
        run.prepare()
    except (PlanError, ModelError, EngineError, SuiteError, ValueError) as err:
        fail(str(err))
    interrupt_on_sigterm()
    console.print(
        f"tuning [bold]{config.plan.name}[/bold]: {run.search.size()} configs in the space, "
        f"budget {config.budget} trials, objective {config.objective} → {run_path}"
    )
    progress = TuneProgress(config.budget, config.space.confirm_top)
    with progress.bar:
        try:
            result = run.run(progress.on_trial)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted: servers stopped, trials so far in {run_path} (--resume it)[/yellow]")
            raise typer.Exit(130) from None
    console.print(f"[bold]result:[/bold] {result.summary}", soft_wrap=True, highlight=False)
    if write_plan and (name := run.write_plan(result, write_plan)):
        console.print(
            f"written: {write_plan} (rung `{name}`: `ladder climb {write_plan} --rung "
            f"{config.plan.baseline.name} --rung {name}` measures it again)"
        )
    console.print(f"results: {run_path / 'tune.md'}, {run_path / 'tune.json'}, {report_or_reason(run_path)}")
    if result.winner is None:
        fail("no trial is inside the quality budget (see tune.md for why each is out)", code=1)
