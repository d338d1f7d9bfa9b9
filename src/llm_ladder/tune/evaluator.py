"""A tune trial on a real engine: the climb's own rung machinery (start, verify, measure, stop, append to
results.jsonl) on the trial's config, with the objective's workload only, and the quality work only where the
output-affecting combination is new.

Quality is judged exactly as a climb judges a rung (agreement with the baseline's prompt logprobs, answers'
perplexity, paired task-suite accuracy, greedy identity for speculation: `recommend.judge`), against the plan's
baseline, which the tune measures first under its own name. As in `--quick`, a combination whose agreement is
already outside the budget skips its task suites.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

from llm_ladder.climb.climber import Climber, Notify
from llm_ladder.engines.base import EngineError, EngineSet
from llm_ladder.measure.client import RequestRecord
from llm_ladder.measure.server import Sinks
from llm_ladder.models.store import ModelError, ModelStore, resolve_rung
from llm_ladder.outputs.results import RunDir, RungResult, RunSummary
from llm_ladder.plan.schema import AgreementSpec, Objective, Plan, PlanError, SuitesSpec, objective_workload
from llm_ladder.quality.recommend import judge
from llm_ladder.tune.space import SearchSpace, Value
from llm_ladder.tune.trials import Measured, Quality, TuneObjective

PLAN_OBJECTIVE: dict[TuneObjective, Objective | None] = {
    "decode_tps_long": "decode_tps_long",
    "ttft_p99": "ttft_ms",
    "goodput": None,  # the load sweep's; the plan's own objective picks the workload kept
}


def trial_plan(plan: Plan, objective: TuneObjective, slo: dict[str, float]) -> Plan:
    """The plan a trial is climbed with: the objective's workload (the climber's quick mode keeps only it) and
    the load sweep only when goodput is the objective, with the SLOs as its goodput limits."""
    update: dict[str, object] = {}
    if (mapped := PLAN_OBJECTIVE[objective]) is not None:
        update |= {"objective": mapped, "load": None}
        workload = objective_workload(mapped)
        if workload not in {w.name for w in plan.workloads}:
            raise PlanError(
                f"--objective {objective} is measured on a workload named {workload!r}; the plan has "
                f"{', '.join(w.name for w in plan.workloads)}"
            )
    elif plan.load is None:
        raise PlanError("--objective goodput needs a `load` section in the plan (the sweep goodput is counted on)")
    elif not (plan.load.slo or slo):
        raise PlanError(
            "--objective goodput needs SLOs (--slo ttft=…,tpot=… or the plan's load.slo): goodput "
            "counts the requests that meet them"
        )
    else:
        update["load"] = plan.load.model_copy(update={"slo": plan.load.slo | slo})
    return plan.model_copy(update=update)


class EngineEvaluator:
    """Evaluates trials with two climbers over one run directory: one measuring quality, one speed only."""

    def __init__(
        self,
        search: SearchSpace,
        plan: Plan,
        run_dir: RunDir,
        engines: EngineSet,
        store: ModelStore,
        notify: Notify,
        objective: TuneObjective,
        sinks: Sinks | None = None,
    ) -> None:
        self.search, self.objective, self.sinks = search, objective, sinks or Sinks()
        self.quality = Climber(plan, run_dir, engines, store, notify, quick=True)
        self.speed = copy.copy(self.quality)
        self.speed.plan = self.quality.plan.model_copy(
            update={"agreement": AgreementSpec(enabled=False), "suites": SuitesSpec(enabled=False)}
        )
        self.results: dict[str, RungResult] = dict(run_dir.completed_rungs())
        """Every trial rung measured, by name (the baseline's is the quality reference)."""

    def prepare(self) -> None:
        """Resolve (or make) every plan model and load the suites, before any server starts."""
        self.quality.prepare()
        self.speed.rungs, self.speed.sources, self.speed.suites = self.quality.rungs, self.quality.sources, []
        self.speed.bandwidth, self.speed.load = self.quality.bandwidth, self.quality.load

    def evaluate(self, params: dict[str, Value], name: str, with_quality: bool, reference: str | None) -> Measured:
        climber = self.quality if with_quality else self.speed
        started = time.monotonic()
        records: list[RequestRecord] = []
        try:
            original = self.search.rung(params, name)
            engine = climber.engines.get(climber.plan.engine_of(original))
            rung = engine.prepare(resolve_rung(original, climber.store), climber.notify)
        except Exception as err:  # a config the engine or the store cannot make is an infeasible trial, not a crash
            error = f"{type(err).__name__}: {err}" if not isinstance(err, EngineError | ModelError) else str(err)
            return Measured(started=False, error=error, rung=name, wall_s=round(time.monotonic() - started, 1))
        if original.speculative:
            climber.greedy_references[name] = reference

        def record(r: RequestRecord) -> None:
            records.append(r)
            self.sinks.on_record(r)

        result = climber.climb_rung(original, rung, replace(self.sinks, on_record=record))
        self.results[name] = result
        measured = self._measured(result, records, climber.plan)
        if with_quality and result.status == "ok":  # a failed run says nothing about the output's quality
            measured.quality = self._judge(result)
            climber.run_dir.append("rung", result)  # again, now with its comparisons (a later record wins)
        measured.wall_s = round(time.monotonic() - started, 1)
        return measured

    def _measured(self, result: RungResult, records: list[RequestRecord], plan: Plan) -> Measured:
        workload = objective_workload(plan.objective)
        mine = [r for r in records if r.ok and r.workload == workload and r.trial >= 0]
        tpot = [1000 / tps for r in mine if (tps := r.decode_tps)]
        ttft = [r.ttft_s * 1000 for r in mine if r.ttft_s is not None]
        if self.objective == "goodput":
            values = [lv["request_goodput"] or 0.0 for lv in (result.load or {}).get("levels", [])]
        else:
            values = ttft if self.objective == "ttft_p99" else [tps for r in mine if (tps := r.decode_tps)]
        startup = result.startup.total_s if result.startup is not None else None
        return Measured(
            started=bool(result.command),
            error=None if result.status == "ok" else result.error,
            values=values,
            ttft_ms=ttft,
            tpot_ms=tpot,
            startup_s=startup,
            rung=result.name,
        )

    def _judge(self, result: RungResult) -> Quality:
        """The climb's comparisons and verdict for this rung against the baseline."""
        baseline = self.results.get(self.search.plan.baseline.name)
        summary = RunSummary(
            plan="tune",
            engine=self.search.plan.engine,
            started_at="",
            host={},
            baseline=self.search.plan.baseline.name,
            rungs=[r for r in (baseline, result) if r is not None],
        )
        comparisons = self.quality.comparisons()
        comparisons.agreements(summary)
        comparisons.suites(summary)
        verdict = judge(result, baseline, self.search.plan.quality_budget)
        reasons = verdict.reasons
        if result.skipped:  # the agreement failed: the rest was not measured, which is not a reason of its own
            reasons = [r for r in reasons if not r.startswith("no task-suite results")]
            reasons.append(f"{' and '.join(result.skipped)} not measured (the agreement decided)")
        if result.greedy_identity_error:
            reasons.append(f"greedy identity n/a: {result.greedy_identity_error}")
        a = result.agreement
        return Quality(
            accepted=verdict.accepted,
            reasons=reasons,
            measured_in=-1,  # the tuner sets the trial
            same_top=a.same_top if a else None,
            mean_kl=a.mean_kl if a else None,
        )
