"""What one tune trial measured, how it is scored, and whether it is feasible (tune.jsonl holds one per line).

The score is robust to noise the way vLLM's tune_speculative_k scores a point: median − λ·1.4826·MAD over the
repeats (λ = the space's spread_penalty), so a config whose rates swing must beat a steady one by more than its
swing. TTFT is judged by its p99, goodput by the load sweep's best level.
"""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import BaseModel

from llm_ladder.measure.metrics import percentile

TuneObjective = Literal["decode_tps_long", "goodput", "ttft_p99"]

MAD_TO_SIGMA = 1.4826
"""MAD × this estimates the standard deviation of normal noise."""


def maximizes(objective: TuneObjective) -> bool:
    return objective != "ttft_p99"


def robust_score(values: list[float], objective: TuneObjective, penalty: float) -> float | None:
    """The trial's score from its repeats (see the module docstring); None without any."""
    if not values:
        return None
    if objective == "ttft_p99":
        return percentile(values, 99)
    if objective == "goodput":
        return max(values)
    mid = statistics.median(values)
    mad = statistics.median(abs(v - mid) for v in values)
    return mid - penalty * MAD_TO_SIGMA * mad


class Quality(BaseModel):
    """A quality verdict for one output-affecting combination, measured once, reused by its speed variants."""

    accepted: bool
    reasons: list[str]
    measured_in: int
    """The trial that measured it."""
    same_top: float | None = None
    """Agreement with the baseline's top token (the report's quality axis); None where not measured."""
    mean_kl: float | None = None


class Measured(BaseModel):
    """One evaluation of one config on a fresh server."""

    started: bool
    error: str | None = None
    values: list[float] = []
    """The objective per repeat: decode tok/s per request, TTFT ms per request, or goodput per load level."""
    ttft_ms: list[float] = []
    tpot_ms: list[float] = []
    quality: Quality | None = None
    """Set when this evaluation measured quality (a new output combination)."""
    startup_s: float | None = None
    wall_s: float = 0.0
    rung: str = ""
    """The rung's name in the run directory's results.jsonl."""


class TrialRecord(BaseModel):
    """One trial as tune.json and tune.md show it."""

    number: int
    kind: Literal["seed", "search", "confirm"]
    seed_of: str | None = None
    """The plan rung a seed trial reproduces."""
    params: dict[str, Any]
    quality_key: str
    config: dict[str, Any] = {}
    measured: Measured | None = None
    """None where nothing had to start: quality known to be outside the budget, or the same config measured."""
    quality: Quality | None = None
    score: float | None = None
    feasible: bool = False
    why_not: list[str] = []
    same_as: int | None = None
    """A repeated config: the trial whose measurement is reused."""
    confirms: int | None = None
    """A confirm run: the trial it measures again."""

    def judge(self, slo: dict[str, float]) -> None:
        """Feasible when it started, its quality is inside the budget and every SLO holds (p99, ms)."""
        why = []
        m = self.measured
        if m is not None and not m.started:
            why.append(f"did not start: {m.error}")
        elif m is not None and m.error:
            why.append(f"failed: {m.error}")
        if self.quality is None:
            why.append("no quality measurement")
        elif not self.quality.accepted:
            why.append(f"quality (trial {self.quality.measured_in}): {'; '.join(self.quality.reasons)}")
        for what, limit in slo.items():
            series = (m.ttft_ms if what == "ttft" else m.tpot_ms) if m else []
            p99 = percentile(series, 99)
            if m is not None and m.started and (p99 is None or p99 > limit):
                got = "not measured" if p99 is None else f"{p99:.1f} ms"
                why.append(f"SLO {what} p99 {got} > {limit:g} ms")
        self.why_not, self.feasible = why, not why


def constraint_values(record: TrialRecord) -> dict[str, float]:
    """Optuna constraints (> 0 infeasible), graded where a grade exists so the sampler learns the direction."""
    q = record.quality
    return {
        "starts": float(any(w.startswith(("did not start", "failed")) for w in record.why_not)),
        "quality": 0.0 if q is not None and q.accepted else float(len(q.reasons) if q else 1),
        "slo": float(sum(1 for w in record.why_not if w.startswith("SLO "))),
    }
