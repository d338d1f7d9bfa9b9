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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from llm_ladder.outputs.jsonl import append_line, read_lines
from llm_ladder.tune.result import TuneResult, conclude, measured_trials, ranked, searched
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


class TuneError(RuntimeError):
    """A tune that cannot go on (its baseline did not run); the message says why."""


class Evaluator(Protocol):
    """Starts a config's engine and measures it: speed always, quality when asked (a new combination)."""

    def evaluate(self, params: dict[str, Value], name: str, with_quality: bool, reference: str | None) -> Measured:
        """`name`: the trial's rung name in the run; `reference`: the rung whose greedy answers a speculative
        config must reproduce (None where none is measured)."""
        ...


@dataclass
class TuneOptions:
    budget: int
    objective: TuneObjective = "decode_tps_long"
    slo: dict[str, float] = field(default_factory=dict)


def trial_name(number: int, baseline: str | None) -> str:
    return baseline if baseline else f"t{number:03d}"


def _ok(record: TrialRecord) -> bool:
    m = record.measured
    return m is not None and m.started and not m.error


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
        self.baseline = search.plan.baseline.name
        self.interrupted = False

    # -- the study ------------------------------------------------------------------------------------------
    def _study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{(self.out / 'tune.db').resolve()}"
        direction = "maximize" if maximizes(self.options.objective) else "minimize"
        done = len(
            optuna.create_study(study_name="tune", storage=storage, load_if_exists=True, direction=direction).trials
        )
        seed = self.search.space.seed + done  # a resumed study's random phase must not repeat its first points
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            startup = max(2, len(self.search.seeds()))
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)
        study = optuna.load_study(study_name="tune", storage=storage, sampler=sampler)
        asked = {t.user_attrs.get("seed_of") for t in study.trials}
        for name, params in self.search.seeds()[: self.options.budget]:  # a budget grown on resume adds the rest
            if name not in asked:
                study.enqueue_trial(params, user_attrs={"seed_of": name})
        if done == 0 and self.search.size() <= self.options.budget:  # the whole space fits: every point, in order
            for params in self.search.every_point():
                study.enqueue_trial(params, skip_if_exists=True)
        return study

    def _interrupted(self, study: optuna.Study) -> list[optuna.Trial]:
        """A resumed study's trials left RUNNING: told from tune.jsonl where their record was written, else run
        again first, in their order (the baseline, interrupted, must still come before everything else)."""
        by_number = {r.number: r for r in searched(self.records)}
        again = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial = optuna.Trial(study, t._trial_id)
            if (record := by_number.get(t.number)) is not None:
                self._tell(study, trial, record)
            else:
                again.append(trial)
        return again

    def _tell(self, study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
        for key, value in constraint_values(record).items():
            trial.set_constraint(key, value)
        study.tell(trial, record.score if record.score is not None else self._neutral())

    def _neutral(self) -> float:
        """The value of a trial with no score (it did not start): the median of scored trials, so the sampler
        learns from its constraint, not from a made-up speed."""
        scores = [r.score for r in searched(self.records) if r.score is not None]
        return statistics.median(scores) if scores else 0.0

    # -- the loop -------------------------------------------------------------------------------------------
    def budget_used(self) -> int:
        return len(measured_trials(self.records))

    def run(self) -> TuneResult:
        """The trials until the budget is used (or the space is), then the confirm runs; at Ctrl-C the trial
        under way is left RUNNING in the study, and `--resume` runs it first."""
        try:
            self._check_baseline()
            study = self._study()
            pending = self._interrupted(study)
            asks = len(searched(self.records))
            cap = ASKS_PER_TRIAL * self.options.budget + len(self.search.seeds())
            while self.budget_used() < self.options.budget and asks < cap and not self._exhausted():
                trial = pending.pop(0) if pending else study.ask(self.distributions)
                asks += 1
                if self._defer(study, trial):
                    continue
                record = self._trial(trial)
                self._keep(record)
                self._tell(study, trial, record)
                self._check_baseline()
            self._confirm()
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        return self.result()

    def _check_baseline(self) -> None:
        base = next((r for r in searched(self.records) if r.seed_of == self.baseline and r.measured), None)
        if base is not None and not _ok(base):
            why = base.measured.error if base.measured else "no measurement"
            raise TuneError(
                f"the baseline {self.baseline} did not run ({why}): every trial's quality is judged "
                "against it; fix it (`ladder climb --rung` it alone) and start the tune again"
            )

    def _defer(self, study: optuna.Study, trial: optuna.Trial) -> bool:
        """A speculative config whose non-speculative twin has no quality yet is put back behind the twin (both
        queued), so its greedy identity has a reference; the proposal is told FAIL, which TPE ignores."""
        params = {name: trial.params[name] for name in self.distributions}
        twin = self.search.reference(params)
        if params["speculative"] == "none" or self.search.quality_key(twin) in self.qualities:
            return False
        if any(r.params == twin and r.measured for r in searched(self.records)):
            return False  # the twin was tried and did not run: judged without identity rather than never
        study.enqueue_trial(twin, skip_if_exists=True)
        study.enqueue_trial(params, user_attrs=dict(trial.user_attrs))
        study.tell(trial, state=TrialState.FAIL)
        return True

    def _exhausted(self) -> bool:
        """Every point of the space has been tried (a space smaller than the budget)."""
        tried = {json.dumps(r.params, sort_keys=True) for r in searched(self.records)}
        return len(tried) >= self.search.size()

    def _keep(self, record: TrialRecord) -> None:
        append_line(self.log, record.model_dump_json(), sync=False)
        self.records.append(record)
        self.on_trial(record, self.budget_used(), self.best())

    def _trial(self, trial: optuna.Trial) -> TrialRecord:
        params = {name: trial.params[name] for name in self.distributions}
        seed_of = trial.user_attrs.get("seed_of")
        key = self.search.quality_key(params)
        kind = "seed" if seed_of else "search"
        record = TrialRecord(number=trial.number, kind=kind, seed_of=seed_of, params=params, quality_key=key)
        record.config = self.search.config(params)
        same = next((r for r in measured_trials(self.records) if r.config == record.config), None)
        if same is not None:  # a config measured already (the same point, or one that resolves alike)
            record.same_as, record.quality, record.score = same.number, same.quality, same.score
            record.feasible, record.why_not = same.feasible, same.why_not
            return record
        if (known := self._known_bad(params, key)) is not None:
            record.quality = known  # outside the budget whatever the speed: no engine start
        else:
            record.measured = self._measure(params, trial.number, seed_of, key)
            record.quality = record.measured.quality or self.qualities.get(key)
            record.score = self._score(record.measured)
        record.judge(self.options.slo)
        return record

    def _known_bad(self, params: dict[str, Value], key: str) -> Quality | None:
        """A verdict outside the budget that already holds for this config: its own combination's, or, for a
        speculative config, its model's without speculation (lossless speculation keeps the output, so it
        cannot bring a model back inside the budget)."""
        known = self.qualities.get(key)
        if known is not None and not known.accepted:
            return known
        twin = self.qualities.get(self.search.quality_key(self.search.reference(params)))
        if params["speculative"] == "none" or twin is None or twin.accepted:
            return None
        why = f"without speculation (trial {twin.measured_in}) it is outside the budget; speculation keeps the output"
        return twin.model_copy(update={"reasons": [why, *twin.reasons]})

    def _measure(self, params: dict[str, Value], number: int, seed_of: str | None, key: str) -> Measured:
        baseline = seed_of if seed_of == self.baseline else None
        twin = self.qualities.get(self.search.quality_key(self.search.reference(params)))
        reference = self._rung_name(twin.measured_in) if twin and params["speculative"] != "none" else None
        measured = self.evaluator.evaluate(params, trial_name(number, baseline), key not in self.qualities, reference)
        if measured.quality is not None:
            measured.quality.measured_in = number
            self.qualities[key] = measured.quality
        return measured

    def _rung_name(self, number: int) -> str | None:
        return next((r.measured.rung for r in searched(self.records) if r.number == number and r.measured), None)

    def _score(self, measured: Measured) -> float | None:
        return robust_score(measured.values, self.options.objective, self.search.space.spread_penalty)

    def best(self) -> TrialRecord | None:
        order = ranked(self.records, self.options.objective, self.search.space.spread_penalty)
        return order[0][0] if order else None

    # -- confirmation ---------------------------------------------------------------------------------------
    def _confirm(self) -> None:
        """The best `confirm_top` configs, and the best plan rung, measured again on fresh servers (speed only;
        quality is cached), until the leaders by pooled score are all confirmed: one lucky run must not pick
        the winner, and the comparison with the fixed ladder is made on equal terms."""
        top, penalty = self.search.space.confirm_top, self.search.space.spread_penalty
        for _ in range(2 * top + 1 if top else 0):
            order = [r for r, _ in ranked(self.records, self.options.objective, penalty)]
            leaders = order[:top] + [r for r in order if r.kind == "seed"][:1]
            todo = [r for r in leaders if not any(c.confirms == r.number for c in self.records)]
            if not todo:
                return
            self._confirm_one(todo[0])

    def _confirm_one(self, original: TrialRecord) -> None:
        number = sum(1 for r in self.records if r.kind == "confirm")
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

    def result(self) -> TuneResult:
        result = TuneResult(
            objective=self.options.objective,
            budget=self.options.budget,
            slo=self.options.slo,
            space=self.space_source,
            trials=self.records,
            interrupted=self.interrupted,
            seeds_total=min(len(self.search.seeds()), self.options.budget),
        )
        return conclude(result, self.search.space.spread_penalty)
