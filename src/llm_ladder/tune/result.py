"""A tune's outcome from its trial records: the ranking by pooled score (a trial's repeats and its confirm runs'
together), the winner, the best plan rung measured in the same budget, and the one-line summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel

from llm_ladder.tune.trials import TrialRecord, TuneObjective, maximizes, robust_score

UNITS = {"decode_tps_long": "tok/s", "goodput": "req/s", "ttft_p99": "ms"}


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
    """The best plan rung (a seed trial) measured in the same budget, for comparison."""
    best_seed_score: float | None = None
    seeds_measured: int = 0
    seeds_total: int = 0
    trial_s: float = 0.0
    """Seconds spent in trials (engine starts and measurements), summed over every session of the tune."""
    interrupted: bool = False
    summary: str = ""


def searched(records: list[TrialRecord]) -> list[TrialRecord]:
    """Seed and search trials (not confirm runs)."""
    return [r for r in records if r.kind != "confirm"]


def measured_trials(records: list[TrialRecord]) -> list[TrialRecord]:
    """Trials that started (or tried to start) an engine of their own: what the budget counts."""
    return [r for r in searched(records) if r.measured is not None and r.same_as is None]


def confirms_of(records: list[TrialRecord], number: int) -> list[TrialRecord]:
    return [r for r in records if r.kind == "confirm" and r.confirms == number]


def pooled_score(
    records: list[TrialRecord], record: TrialRecord, objective: TuneObjective, penalty: float
) -> float | None:
    """The trial's score over its own repeats and its confirm runs' together; None when any of them was not
    feasible (it failed, or broke an SLO on a fresh server): such a config is not recommended."""
    runs = [record, *confirms_of(records, record.number)]
    if not all(r.feasible for r in runs):
        return None
    return robust_score([v for r in runs if r.measured for v in r.measured.values], objective, penalty)


def ranked(records: list[TrialRecord], objective: TuneObjective, penalty: float) -> list[tuple[TrialRecord, float]]:
    """Feasible trials measured on their own engine, best pooled score first."""
    scored = [
        (r, s) for r in measured_trials(records) if (s := pooled_score(records, r, objective, penalty)) is not None
    ]
    return sorted(scored, key=lambda x: x[1], reverse=maximizes(objective))


def conclude(result: TuneResult, penalty: float) -> TuneResult:
    """Fill the winner, the best plan rung and the summary from the trials."""
    order = ranked(result.trials, result.objective, penalty)
    if order:
        result.winner, result.winner_score = order[0][0].number, order[0][1]
    seeds = [(r, s) for r, s in order if r.kind == "seed"]
    if seeds:
        result.best_seed, result.best_seed_score = seeds[0][0].number, seeds[0][1]
    result.seeds_measured = sum(1 for r in measured_trials(result.trials) if r.kind == "seed")
    result.trial_s = round(sum(r.measured.wall_s for r in result.trials if r.measured), 1)
    result.summary = summarize(result)
    return result


def _why_none(result: TuneResult) -> str:
    causes: Counter[str] = Counter()
    for r in measured_trials(result.trials):
        for why in r.why_not:
            causes[why.split(":")[0].split(" (")[0].removeprefix("SLO ").split(" p99")[0]] += 1
    detail = ", ".join(f"{what}: {n}" for what, n in causes.most_common())
    return f"no feasible trial ({detail or 'none measured'})"


def summarize(result: TuneResult) -> str:
    """One line: the winner against the best plan rung, or why there is none."""
    unit = UNITS[result.objective]
    lead = "interrupted; so far: " if result.interrupted else ""
    if result.winner is None:
        return lead + _why_none(result)
    by = {r.number: r for r in searched(result.trials)}
    win = by[result.winner]
    text = f"{lead}trial {win.number} ({describe(win.params)}): {result.objective} {result.winner_score:.1f} {unit}"
    if result.best_seed is not None and result.best_seed_score:
        seed = by[result.best_seed]
        ratio = (result.winner_score or 0) / result.best_seed_score
        ratio = ratio if maximizes(result.objective) else (1 / ratio if ratio else 0.0)
        of = f"{result.seeds_measured} of {result.seeds_total}" if result.seeds_measured < result.seeds_total else ""
        text += f", {ratio:.2f}× the best plan rung {seed.seed_of} ({result.best_seed_score:.1f} {unit}"
        text += f"; plan rungs measured: {of})" if of else ")"
        if result.winner == result.best_seed:
            text += ": no searched config beat the fixed ladder's best rung"
    return text


def describe(params: dict[str, Any]) -> str:
    """`int4 + ngram-k4, max_num_seqs=8`: the base, speculation and every knob that is set."""
    knobs = [
        f"{k.split('.', 1)[1]}={v}" for k, v in params.items() if k.startswith(("output.", "speed.")) and v is not None
    ]
    spec = f" + {params['speculative']}" if params.get("speculative") not in (None, "none") else ""
    return f"{params['base']}{spec}" + (f", {', '.join(knobs)}" if knobs else "")
