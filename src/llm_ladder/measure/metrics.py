"""Aggregation of timed requests into per-workload statistics, and spec-decode counters from /metrics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from llm_ladder.measure.client import RequestRecord

REPETITION_FLAG = 0.5
"""Share of repeated 4-grams above which an output is flagged as degenerate (looping text)."""


class Spread(BaseModel):
    """Median with the min and max over trials: the spread says whether two medians really differ."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        vals = [v for v in values if v is not None]
        if not vals:
            return None
        return cls(median=statistics.median(vals), min=min(vals), max=max(vals), n=len(vals))


SETTLED_RUN = 3
SETTLED_SPREAD = 0.03


@dataclass(frozen=True)
class Trials:
    """How many trials a workload gets: `most`, or fewer once the median is settled, never fewer than `least`.

    The rule: after at least `least` trials (and at least SETTLED_RUN), stop when the last SETTLED_RUN decode
    rates all lie within ±SETTLED_SPREAD of their median. `least` None means no early stop (every trial runs)."""

    most: int
    least: int | None = None

    def settled(self, rates: Sequence[float | None]) -> bool:
        if self.least is None or len(rates) < max(self.least, SETTLED_RUN) or len(rates) >= self.most:
            return False
        last = rates[-SETTLED_RUN:]
        if any(r is None or r <= 0 for r in last):
            return False
        mid = statistics.median(last)  # type: ignore[type-var]
        return all(abs(r - mid) <= SETTLED_SPREAD * mid for r in last)  # type: ignore[operator]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def repetition_ratio(text: str, n: int = 4) -> float:
    """Share of word n-grams that already occurred earlier in the text (0 = no repeats, ~1 = a loop)."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


class WorkloadStats(BaseModel):
    """One workload on one rung, over its trials."""

    requests: int
    errors: int
    ttft_ms: Spread | None
    decode_tps: Spread | None
    e2e_tps: Spread | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    prompt_tokens: int | None
    completion_tokens: Spread | None
    repetition: Spread | None
    degenerate: bool
    """True when the median output repeats itself: a speedup measured on it is not trustworthy."""
    energy_j_per_token: float | None = None
    """Joules per output token over the trials (whole GPU or CPU package, see energy.py); None without a counter."""
    output_perplexity: Spread | None = None
    """Perplexity of the answers under the serving model: high means text the model would not produce."""


def summarize(records: Sequence[RequestRecord]) -> WorkloadStats:
    ok = [r for r in records if r.ok]
    itl_ms = [gap * 1000 for r in ok for gap in r.itl_s]
    reps = Spread.of(repetition_ratio(r.text) for r in ok)
    return WorkloadStats(
        requests=len(records),
        errors=len(records) - len(ok),
        ttft_ms=Spread.of(r.ttft_s * 1000 for r in ok if r.ttft_s is not None),
        decode_tps=Spread.of(r.decode_tps for r in ok),
        e2e_tps=Spread.of(r.e2e_tps for r in ok),
        itl_p50_ms=percentile(itl_ms, 50),
        itl_p95_ms=percentile(itl_ms, 95),
        prompt_tokens=ok[0].prompt_tokens if ok else None,
        completion_tokens=Spread.of(r.completion_tokens for r in ok),
        repetition=reps,
        degenerate=bool(reps and reps.median > REPETITION_FLAG),
        output_perplexity=Spread.of(r.output_perplexity for r in ok),
    )


SPEC_COUNTERS = {
    "spec_decode_num_drafts": "drafts",
    "spec_decode_num_draft_tokens": "draft_tokens",
    "spec_decode_num_accepted_tokens": "accepted_tokens",
}
"""Counter names after the engine's prefix (Capabilities.spec_metrics): vLLM's `vllm:` and llama.cpp's
`llamacpp:` use the same ones."""


class SpecStats(BaseModel):
    """Speculative decoding over a measured window (difference of two /metrics scrapes)."""

    drafts: float = 0
    draft_tokens: float = 0
    accepted_tokens: float = 0

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None

    @property
    def mean_acceptance_length(self) -> float | None:
        """Tokens produced per verification step: the bonus token plus the accepted drafts."""
        return 1 + self.accepted_tokens / self.drafts if self.drafts else None

    def __sub__(self, other: SpecStats) -> SpecStats:
        return SpecStats(**{k: getattr(self, k) - getattr(other, k) for k in SpecStats.model_fields})

    def __add__(self, other: SpecStats) -> SpecStats:
        return SpecStats(**{k: getattr(self, k) + getattr(other, k) for k in SpecStats.model_fields})


def parse_spec_counters(metrics_text: str, prefix: str = "vllm:") -> SpecStats:
    """Sum the spec-decode counters named `prefix` + SPEC_COUNTERS over all label sets (one per engine / model)."""
    totals = dict.fromkeys(SPEC_COUNTERS.values(), 0.0)
    for family in text_string_to_metric_families(metrics_text):
        name = family.name.removesuffix("_total")
        key = SPEC_COUNTERS.get(name.removeprefix(prefix)) if name.startswith(prefix) else None
        if key is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[key] += sample.value
    return SpecStats(**totals)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sound at small n and near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
