"""One `ladder tune` run directory: its settings (tune-config.json, so `--resume` continues the same study), the
evaluator on the plan's engines, the search, and every output written at the end or at Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from llm_ladder.engines.base import EngineSet
from llm_ladder.measure.server import Sinks
from llm_ladder.models.store import ModelStore
from llm_ladder.outputs.results import RunDir
from llm_ladder.outputs.summary import to_markdown as summary_markdown
from llm_ladder.plan.schema import Plan, PlanError
from llm_ladder.tune.evaluator import EngineEvaluator, trial_plan
from llm_ladder.tune.outputs import plan_with, run_summary, winner_rung, write_outputs
from llm_ladder.tune.result import TuneResult
from llm_ladder.tune.space import SearchSpace, Space
from llm_ladder.tune.study import Evaluator, TuneOptions, Tuner
from llm_ladder.tune.trials import TrialRecord, TuneObjective

CONFIG = "tune-config.json"


class TuneConfig(BaseModel):
    """What a tune was started with; a resumed tune reads it back (only the budget may grow)."""

    plan: Plan
    space: Space
    space_source: str
    objective: TuneObjective
    slo: dict[str, float]
    budget: int
    started_at: str


def parse_slo(text: str | None) -> dict[str, float]:
    """`ttft=500,tpot=50` (milliseconds, p99) as a dict; ValueError naming the bad part."""
    slo: dict[str, float] = {}
    for part in filter(None, (text or "").split(",")):
        key, _, value = part.partition("=")
        if key.strip() not in ("ttft", "tpot"):
            raise ValueError(f"--slo {part!r}: the keys are ttft and tpot (p99, milliseconds), e.g. ttft=500,tpot=50")
        try:
            slo[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--slo {part!r}: {value!r} is not a number of milliseconds") from None
    return slo


def new_config(
    plan: Plan, space: tuple[Space, str], objective: TuneObjective, slo: str | None, budget: int
) -> TuneConfig:
    return TuneConfig(
        plan=plan,
        space=space[0],
        space_source=space[1],
        objective=objective,
        slo=parse_slo(slo),
        budget=budget,
        started_at=datetime.now(UTC).isoformat(),
    )


def resumed_config(out: Path, budget: int | None) -> TuneConfig:
    """The settings of the tune in `out`, its budget raised to `budget` if given."""
    path = out / CONFIG
    if not path.is_file():
        raise PlanError(f"--resume {out}: no {CONFIG} there (not a tune run directory)")
    config = TuneConfig.model_validate_json(path.read_text())
    return config.model_copy(update={"budget": max(config.budget, budget or 0)})


class TuneRun:
    def __init__(
        self,
        config: TuneConfig,
        out: Path,
        engines: EngineSet,
        store: ModelStore,
        notify: Callable[[str], None],
        resume: bool = False,
    ) -> None:
        self.config, self.out, self.engines, self.store, self.notify = config, out, engines, store, notify
        if not resume and any((out / f).exists() for f in ("tune.jsonl", "tune.db", CONFIG)):
            raise PlanError(f"--out {out} holds a tune already: --resume it, or choose another directory")
        self.search = SearchSpace.resolve(config.space, config.plan, config.space_source)
        self.run_dir = RunDir(out)
        self.evaluator: EngineEvaluator | None = None
        self.tuner: Tuner | None = None

    def prepare(self, sinks: Sinks | None = None, evaluator: Evaluator | None = None) -> None:
        """Models resolved (or made) and suites loaded before any server starts; settings written."""
        if evaluator is None:
            plan = trial_plan(self.config.plan, self.config.objective, self.config.slo)
            self.evaluator = EngineEvaluator(
                self.search, plan, self.run_dir, self.engines, self.store, self.notify, self.config.objective, sinks
            )
            self.evaluator.prepare()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / CONFIG).write_text(self.config.model_dump_json(indent=2))
        options = TuneOptions(self.config.budget, self.config.objective, self.config.slo)
        self.tuner = Tuner(self.search, evaluator or self.evaluator, options, self.out, self.config.space_source)  # type: ignore[arg-type]

    def run(self, on_trial: Callable[[TrialRecord, int, TrialRecord | None], None]) -> TuneResult:
        """The search, then the outputs; at Ctrl-C the outputs of the trials so far, then the interrupt."""
        assert self.tuner is not None
        self.tuner.on_trial = on_trial
        try:
            return self.tuner.run()
        finally:
            self.write(self.tuner.result())

    def write(self, result: TuneResult) -> None:
        write_outputs(self.out, result, self.config.plan)
        if self.evaluator is not None:
            summary = run_summary(self.config.plan, result, self.evaluator.results, self.config.started_at)
            summary.finished_at = datetime.now(UTC).isoformat()
            self.run_dir.write_summary(summary, summary_markdown(summary))

    def write_plan(self, result: TuneResult, path: Path) -> str | None:
        """The plan with the winner appended as rung `tuned`; None when there is no winner."""
        rung = winner_rung(self.search, result)
        if rung is None:
            return None
        path.write_text(plan_with(self.config.plan, rung))
        return rung.name
