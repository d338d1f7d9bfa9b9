"""When each request of a load run is sent: a fixed number in flight, or a request rate whose gaps follow a
gamma distribution (shape = burstiness: 1 is a Poisson process, below 1 burstier, infinity a constant rate) —
the same arrival model as `vllm bench serve`, so the two can be compared at equal load."""

from __future__ import annotations

import math
import random

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LoadShape(BaseModel):
    """One load level. With only `concurrency`, requests go out back to back, that many in flight; with `rate`,
    at that many requests/s (and at most `concurrency` in flight when both are given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int | None = Field(default=None, ge=1, le=4096)
    rate: float | None = Field(default=None, gt=0)
    burstiness: float = Field(default=1.0, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _one_bound(self) -> LoadShape:
        if self.concurrency is None and self.rate is None:
            raise ValueError("a load shape needs a concurrency, a rate, or both")
        return self

    @property
    def label(self) -> str:
        parts = []
        if self.rate is not None:
            kind = "constant" if math.isinf(self.burstiness) else f"burstiness {self.burstiness:g}"
            parts.append(f"rate {self.rate:g}/s ({kind})")
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        return ", ".join(parts)


def send_offsets(n: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Seconds from the start at which each of `n` requests is due. Gaps are gamma(burstiness, 1/(rate ×
    burstiness)), then scaled so the last request is due at n / rate: as vllm bench does, this removes the
    1–2% drift of a random sum from run-to-run throughput."""
    if n <= 0:
        return []
    if math.isinf(burstiness):
        gaps = [1.0 / rate] * n
    else:
        rng = random.Random(seed)
        gaps = [rng.gammavariate(burstiness, 1.0 / (rate * burstiness)) for _ in range(n)]
    offsets, total = [], 0.0
    for gap in gaps:
        total += gap
        offsets.append(total)
    scale = (n / rate) / offsets[-1] if offsets[-1] > 0 else 1.0
    return [o * scale for o in offsets]


def parse_numbers(text: str, kind: type[int] | type[float], flag: str) -> list:
    """`1,4,16` → [1, 4, 16]; a one-line error naming the flag otherwise."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated numbers") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{flag} {text!r}: expected positive numbers")
    return values


def shapes_from(
    concurrency: str | None, rate: str | None, burstiness: float = 1.0, seed: int = 0
) -> tuple[LoadShape, ...]:
    """CLI load levels: a concurrency sweep (`--concurrency 1,4,16`), or a rate sweep (`--rate 1,2,4`) capped by
    one `--concurrency` value if given."""
    conc = parse_numbers(concurrency, int, "--concurrency") if concurrency else []
    if not rate:
        return tuple(LoadShape(concurrency=c, seed=seed) for c in conc or [1])
    if len(conc) > 1:
        raise ValueError("--concurrency with --rate is one cap, not a list")
    cap = conc[0] if conc else None
    rates = parse_numbers(rate, float, "--rate")
    return tuple(LoadShape(rate=r, concurrency=cap, burstiness=burstiness, seed=seed) for r in rates)
