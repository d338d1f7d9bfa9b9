"""`ladder tune`: search beyond the fixed ladder, inside the quality budget (the library: llm_ladder.tune)."""

from __future__ import annotations

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
from llm_ladder.tune.result import describe
from llm_ladder.tune.space import load_space
from llm_ladder.tune.trials import TrialRecord, TuneObjective

DEFAULT_BUDGET = 12


class TuneProgress:
    """Trial n of N, the best so far, and the time left (the mean of the trials so far × the trials left)."""

    def __init__(self, budget: int, confirm: int) -> None:
        self.budget, self.confirm = budget, confirm
        self.trial_s: list[float] = []
        """Wall seconds of the trials that started an engine in this session (a resumed tune's earlier ones
        ran elsewhen)."""
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console)
        self.task = self.bar.add_task(f"trial 1 of {budget}", total=budget)

    def on_trial(self, record: TrialRecord, used: int, best: TrialRecord | None) -> None:
        mark = "[green]feasible[/green]" if record.feasible else f"[yellow]{'; '.join(record.why_not)[:160]}[/yellow]"
        score = f"{record.score:.1f}" if record.score is not None else "—"
        label = "c" if record.kind == "confirm" else "trial "  # confirm runs are numbered apart (tune.md: c0, c1)
        console.print(
            f"{label}{record.number} ({record.kind}) {describe(record.params)}: {score} {mark}",
            highlight=False,
            soft_wrap=True,
        )
        if record.measured is not None:
            self.trial_s.append(record.measured.wall_s)
        mean = sum(self.trial_s) / len(self.trial_s) if self.trial_s else 0.0
        left = mean * max(self.budget - used + self.confirm, 0)
        lead = "none feasible yet"
        if best is not None and best.score is not None:
            lead = f"best {best.score:.1f} (trial {best.number})"
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
    budget_trials: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Trials that start an engine, plan rungs first (default 12; confirm runs come on "
            "top; with --resume: the tune's own unless raised).",
        ),
    ] = None,
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
    from llm_ladder.tune.run import TuneRun, new_config, resumed_config
    from llm_ladder.tune.study import TuneError

    try:
        if resume:
            config = resumed_config(resume, budget_trials)
        else:
            the_plan = (load_plan(plan) if plan else machine_plan(None, models_dir)).select(trials=trials)
            the_space = load_space(space, the_plan.engine, detect().gpu is not None)
            config = new_config(the_plan, the_space, objective, slo, budget_trials or DEFAULT_BUDGET)
        run_path = resume or out or default_run_dir(f"tune-{config.plan.name}")
        engines = EngineSet(config.plan.engine)
        engines.get(config.plan.engine)  # preflight before anything starts
        run = TuneRun(config, run_path, engines, ModelStore(models_dir), console.print, resume=resume is not None)
        run.prepare()
    except (PlanError, ModelError, EngineError, SuiteError, ValueError) as err:
        fail(str(err))
    interrupt_on_sigterm()
    for note in run.search.notes():
        console.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)
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
        except TuneError as err:
            fail(f"{err} (trials so far in {run_path})")
    console.print(f"[bold]result:[/bold] {result.summary}", soft_wrap=True, highlight=False)
    if write_plan and (name := run.write_plan(result, write_plan)):
        console.print(
            f"written: {write_plan} (rung `{name}`: `ladder climb {write_plan} --rung "
            f"{config.plan.baseline.name} --rung {name}` measures it again)"
        )
    console.print(f"results: {run_path / 'tune.md'}, {run_path / 'tune.json'}, {report_or_reason(run_path)}")
    if result.winner is None:
        fail(f"{result.summary} (see tune.md for each trial's reasons)", code=1)
