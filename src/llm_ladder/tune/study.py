"""The search: an Optuna study (SQLite in the run directory, so `--resume` continues it) asked and told one trial
at a time, seeded with the plan's rungs, quality cached per output-affecting combination, the best few measured
again before one is recommended.

Constraints go through `trial.set_constraint` on COMPLETE trials: TPE learns nothing from FAIL trials, so a crash
region told FAIL would be proposed again and again, while an infeasible COMPLETE trial ranks below every feasible
one (optuna 5 `_tpe/sampler.py` `_split_trials`). `ask`/`tell` rather than `optimize(n_trials=…)` because cached
answers (a repeated config, a combination whose quality already failed) cost no engine start and do not count.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from pydantic import BaseModel

from llm_ladder.outputs.jsonl import append_line, read_lines
from llm_ladder.tune.space import SearchSpace, Value
from llm_ladder.tune.trials import (
    Measured,
    Quality,
    TrialRecord,
    TuneObjective,
    constraint_values,
    maximizes,
    robust_score,
)

ASKS_PER_TRIAL = 4
"""Cached answers do not count against the budget; this many asks per budgeted trial bound a sampler that keeps
proposing known configs."""


class Evaluator(Protocol):
    """Starts a config's engine and measures it: speed always, quality when asked (a new combination)."""

    def evaluate(self, params: dict[str, Value], name: str, with_quality: bool, reference: str | None) -> Measured:
        """`name`: the trial's rung name in the run; `reference`: the rung whose greedy answers a speculative
        config must reproduce (None where none is measured yet)."""
        ...


@dataclass
class TuneOptions:
    budget: int
    objective: TuneObjective = "decode_tps_long"
    slo: dict[str, float] = field(default_factory=dict)


class TuneResult(BaseModel):
    objective: TuneObjective
    budget: int
    slo: dict[str, float]
    space: str
    trials: list[TrialRecord]
    winner: int | None = None
    """The recommended trial's number (its config is the rung `--write-plan` appends)."""
    winner_score: float | None = None
    best_seed: int | None = None
    """The best plan rung (a seed trial) inside the same budget, for comparison."""
    best_seed_score: float | None = None
    wall_s: float = 0.0
    summary: str = ""


def trial_name(number: int, baseline: str | None) -> str:
    return baseline if baseline else f"t{number:03d}"


class Tuner:
    def __init__(
        self,
        search: SearchSpace,
        evaluator: Evaluator,
        options: TuneOptions,
        out: Path,
        space_source: str = "space",
        on_trial: Callable[[TrialRecord, int, TrialRecord | None], None] = lambda r, n, best: None,
    ) -> None:
        self.search, self.evaluator, self.options, self.out = search, evaluator, options, out
        self.space_source, self.on_trial = space_source, on_trial
        self.log = out / "tune.jsonl"
        self.records: list[TrialRecord] = [TrialRecord.model_validate(r) for r in read_lines(self.log)]
        self.qualities: dict[str, Quality] = {}
        for r in self.records:
            if r.measured is not None and r.measured.quality is not None:
                self.qualities[r.quality_key] = r.measured.quality
        self.distributions = {d.name: CategoricalDistribution(d.choices) for d in search.dims}
        self.started = time.monotonic()

    # -- the study ------------------------------------------------------------------------------------------
    def _study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{(self.out / 'tune.db').resolve()}"
        probe = optuna.create_study(
            study_name="tune",
            storage=storage,
            load_if_exists=True,
            direction="maximize" if maximizes(self.options.objective) else "minimize",
        )
        done = len(probe.trials)
        seed = self.search.space.seed + done  # a resumed study's random phase must not repeat its first points
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            startup = max(2, len(self.search.seeds()))
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)
        study = optuna.load_study(study_name="tune", storage=storage, sampler=sampler)
        if done == 0:
            for name, params in self.search.seeds()[: self.options.budget]:
                study.enqueue_trial(params, user_attrs={"seed_of": name})
            if self.search.size() <= self.options.budget:  # the whole space fits: try every point, in order
                for params in self.search.every_point():
                    study.enqueue_trial(params, skip_if_exists=True)
        self._settle_running(study)
        return study

    def _settle_running(self, study: optuna.Study) -> None:
        """A resumed study's trials left RUNNING: told from tune.jsonl where their record was written, else
        failed and queued again (interrupted mid-measurement)."""
        by_number = {r.number: r for r in self.records if r.kind != "confirm"}
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if (record := by_number.get(t.number)) is not None:
                self._tell(study, study_id_trial(study, t.number), record)
            else:
                study.tell(t.number, state=TrialState.FAIL)
                study.enqueue_trial(t.params, user_attrs=t.user_attrs)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
        for key, value in constraint_values(record).items():
            trial.set_constraint(key, value)
        study.tell(trial, record.score if record.score is not None else self._neutral())

    def _neutral(self) -> float:
        """The value of a trial with no score (it did not start): the median of scored trials, so the sampler
        learns from its constraint, not from a made-up speed."""
        scores = [r.score for r in self.records if r.score is not None and r.kind != "confirm"]
        return statistics.median(scores) if scores else 0.0

    # -- the loop -------------------------------------------------------------------------------------------
    def budget_used(self) -> int:
        return sum(1 for r in self.records if r.kind != "confirm" and r.measured is not None and r.same_as is None)

    def run(self) -> TuneResult:
        study = self._study()
        asks = sum(1 for r in self.records if r.kind != "confirm")
        cap = ASKS_PER_TRIAL * self.options.budget + len(self.search.seeds())
        while self.budget_used() < self.options.budget and asks < cap and not self._exhausted():
            trial = study.ask(self.distributions)
            asks += 1
            record = self._trial(trial)
            self._keep(record)
            self._tell(study, trial, record)
        self._confirm()
        return self.result()

    def _exhausted(self) -> bool:
        """Every point of the space has been tried (a space smaller than the budget)."""
        tried = {json.dumps(r.params, sort_keys=True) for r in self.records if r.kind != "confirm"}
        return len(tried) >= self.search.size()

    def _keep(self, record: TrialRecord) -> None:
        append_line(self.log, record.model_dump_json(), sync=False)
        self.records.append(record)
        self.on_trial(record, self.budget_used(), self.best())

    def _trial(self, trial: optuna.Trial) -> TrialRecord:
        params = {name: trial.params[name] for name in self.distributions}
        seed_of = trial.user_attrs.get("seed_of")
        key = self.search.quality_key(params)
        record = TrialRecord(
            number=trial.number, kind="seed" if seed_of else "search", seed_of=seed_of, params=params, quality_key=key
        )
        record.config = self._config(params, trial.number)
        same = next((r for r in self.records if r.params == params and r.measured and r.kind != "confirm"), None)
        if same is not None:
            record.same_as, record.quality = same.same_as or same.number, same.quality
            record.score = same.score
        elif (known := self.qualities.get(key)) is not None and not known.accepted:
            record.quality = known  # outside the budget whatever the speed: no engine start
        else:
            record.measured = self._measure(params, trial.number, seed_of, key)
            record.quality = record.measured.quality or self.qualities.get(key)
            record.score = self._score(record.measured)
        record.judge(self.options.slo)
        return record

    def _config(self, params: dict[str, Value], number: int) -> dict[str, Any]:
        try:
            return self.search.rung(params, trial_name(number, None)).model_dump(exclude={"name"})
        except Exception as err:  # shown as the trial's failure when measured
            return {"error": str(err)}

    def _measure(self, params: dict[str, Value], number: int, seed_of: str | None, key: str) -> Measured:
        baseline = seed_of if seed_of == self.search.plan.baseline.name else None
        reference = self.qualities.get(self.search.reference_key(params))
        ref_name = self._rung_name(reference.measured_in) if reference else None
        measured = self.evaluator.evaluate(params, trial_name(number, baseline), key not in self.qualities, ref_name)
        if measured.quality is not None:
            measured.quality.measured_in = number
            self.qualities[key] = measured.quality
        return measured

    def _rung_name(self, number: int) -> str | None:
        return next((r.measured.rung for r in self.records if r.number == number and r.measured), None)

    def _score(self, measured: Measured) -> float | None:
        return robust_score(measured.values, self.options.objective, self.search.space.spread_penalty)

    def best(self) -> TrialRecord | None:
        feasible = [r for r in self.records if r.feasible and r.score is not None and r.kind != "confirm"]
        if not feasible:
            return None
        pick = max if maximizes(self.options.objective) else min
        return pick(feasible, key=lambda r: r.score or 0.0)

    # -- confirmation ---------------------------------------------------------------------------------------
    def _confirm(self) -> None:
        """The best `confirm_top` feasible configs measured again on fresh servers (speed only; their quality is
        cached): one lucky run must not pick the winner."""
        for original in self._top(self.search.space.confirm_top):
            if any(r.confirms == original.number for r in self.records):
                continue
            number = max(r.number for r in self.records) + 1
            name = f"c{number:03d}-t{original.number:03d}"
            measured = self.evaluator.evaluate(original.params, name, False, None)
            record = TrialRecord(
                number=number,
                kind="confirm",
                params=original.params,
                confirms=original.number,
                quality_key=original.quality_key,
                config=original.config,
                measured=measured,
                quality=original.quality,
                score=self._score(measured),
            )
            record.judge(self.options.slo)
            self._keep(record)

    def _top(self, n: int) -> list[TrialRecord]:
        ranked = sorted(
            (r for r in self.records if r.feasible and r.score is not None and r.kind != "confirm" and not r.same_as),
            key=lambda r: r.score or 0.0,
            reverse=maximizes(self.options.objective),
        )
        return ranked[:n]

    def pooled_score(self, record: TrialRecord) -> float | None:
        """The trial's score over its own repeats and its confirm runs' together."""
        runs = [record] + [r for r in self.records if r.confirms == record.number]
        if any(r.measured is not None and (r.measured.error or not r.measured.started) for r in runs):
            return None  # a config that failed on a fresh server is not recommended
        values = [v for r in runs if r.measured for v in r.measured.values]
        return robust_score(values, self.options.objective, self.search.space.spread_penalty)

    def result(self) -> TuneResult:
        confirmed = self._top(max(self.search.space.confirm_top, 1))
        scored = [(r, s) for r in confirmed if (s := self.pooled_score(r)) is not None]
        pick = max if maximizes(self.options.objective) else min
        winner = pick(scored, key=lambda x: x[1]) if scored else None
        seeds = [(r, s) for r in self.records if r.kind == "seed" and r.feasible and (s := self.pooled_score(r))]
        best_seed = pick(seeds, key=lambda x: x[1]) if seeds else None
        out = TuneResult(
            objective=self.options.objective,
            budget=self.options.budget,
            slo=self.options.slo,
            space=self.space_source,
            trials=self.records,
            wall_s=round(time.monotonic() - self.started, 1),
        )
        if winner:
            out.winner, out.winner_score = winner[0].number, winner[1]
        if best_seed:
            out.best_seed, out.best_seed_score = best_seed[0].number, best_seed[1]
        out.summary = summarize(out, self.search.plan.baseline.name)
        return out


def study_id_trial(study: optuna.Study, number: int) -> optuna.Trial:
    """A RUNNING trial of a loaded study, as a Trial to set constraints on."""
    frozen = study.get_trials(deepcopy=False)[number]
    return optuna.Trial(study, frozen._trial_id)


def summarize(result: TuneResult, baseline: str) -> str:
    """One line: the winner against the best plan rung, or why there is none."""
    unit = {"decode_tps_long": "tok/s", "goodput": "req/s", "ttft_p99": "ms"}[result.objective]
    if result.winner is None:
        return f"no trial is inside the quality budget{' and the SLOs' if result.slo else ''}"
    by = {r.number: r for r in result.trials}
    win = by[result.winner]
    text = f"trial {win.number} ({describe(win.params)}): {result.objective} {result.winner_score:.1f} {unit}"
    if result.best_seed is not None and result.best_seed_score:
        seed = by[result.best_seed]
        ratio = (result.winner_score or 0) / result.best_seed_score
        if not maximizes(result.objective):
            ratio = 1 / ratio if ratio else 0.0
        text += f", {ratio:.2f}× the best plan rung {seed.seed_of} ({result.best_seed_score:.1f} {unit})"
        if result.winner == result.best_seed:
            text += ": the fixed ladder's rung is already the best found"
    return text


def describe(params: dict[str, Any]) -> str:
    """`int4 + ngram-k4, max_num_seqs=8`: the base, speculation and every knob that is set."""
    knobs = [
        f"{k.split('.', 1)[1]}={v}" for k, v in params.items() if k.startswith(("output.", "speed.")) and v is not None
    ]
    spec = f" + {params['speculative']}" if params.get("speculative") not in (None, "none") else ""
    return f"{params['base']}{spec}" + (f", {', '.join(knobs)}" if knobs else "")
