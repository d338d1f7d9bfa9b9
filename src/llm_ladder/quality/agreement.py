"""Agreement of a rung with the baseline from vLLM prompt logprobs: perplexity, KL divergence, same top token.

These are the quantities llama.cpp's `llama-perplexity --kl-divergence` reports, computed from what an
OpenAI-compatible vLLM server returns: for every prompt position the logprob of the actual token and the
top-k candidates (`/v1/completions` with `prompt_logprobs: k`).

KL(P_base ‖ Q_rung) is estimated per position over the baseline's top-k tokens plus one bucket for the rest
of the vocabulary (the "tail", whose mass is 1 − the top-k mass on each side). A baseline top-k token that
is missing from the rung's top-k gets the rung's k-th logprob, an upper bound on its true probability, so the
estimate leans low rather than inventing divergence; the larger k, the tighter it gets.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, computed_field

from llm_ladder.data import DATA_DIR
from llm_ladder.measure.metrics import wilson_interval

EVAL_TEXT = DATA_DIR / "eval_text.md"

TAIL_FLOOR = 1e-10
"""Smallest tail mass used on the rung side, so a rung that puts all its top-k mass on few tokens stays finite."""


@dataclass(frozen=True)
class Position:
    """One prompt position: the token that is there, its logprob, and the top-k candidates (id → logprob)."""

    actual: int
    actual_logprob: float
    top: dict[int, float]

    @property
    def argmax(self) -> int:
        """The top token; among tied logprobs (frequent in bf16) the smallest id, so positions compare the same
        fresh from the server (its rank order) and read back from disk (id order)."""
        return min(self.top, key=lambda t: (-self.top[t], t))


def parse_prompt_logprobs(entries: Sequence[dict[str, Any] | None], token_ids: Sequence[int], k: int) -> list[Position]:
    """vLLM's `prompt_logprobs` (one dict per prompt token, the first None) into positions.

    Each dict maps token id (a string in JSON) to {"logprob", "rank", ...}; it holds the top-k and, when the
    actual token is outside them, that token too (rank > k), which is kept out of `top`.
    """
    positions = []
    for token, entry in zip(token_ids, entries, strict=True):
        if entry is None:
            continue
        scored = {int(t): (v["logprob"], v.get("rank") or 0) for t, v in entry.items()}
        top = {t: lp for t, (lp, rank) in scored.items() if rank <= k}
        positions.append(Position(actual=token, actual_logprob=scored[token][0], top=top))
    return positions


@dataclass(frozen=True)
class ReferenceLogits:
    """Full-vocabulary logits an engine saved offline (llama.cpp: llama-perplexity's reference): the token
    contexts they were computed in, the first scored position of each, and the scored positions in order."""

    label: str
    chunks: list[list[int]]
    scored_from: int
    positions: list[Position]

    def scored(self, per_chunk: Sequence[Sequence[Position]]) -> list[Position]:
        """Another engine's positions over the same contexts (per chunk, the i-th predicting token i + 1), cut to
        the positions scored here."""
        return [p for chunk in per_chunk for p in chunk[self.scored_from :]]


def perplexity(positions: Sequence[Position]) -> float:
    return math.exp(-statistics.fmean(p.actual_logprob for p in positions))


def kl_divergence(base: Position, rung: Position) -> float:
    """KL(base ‖ rung) at one position over the base's top-k tokens and the tail bucket (see module doc)."""
    floor = min(rung.top.values())
    p = {t: math.exp(lp) for t, lp in base.top.items()}
    q = {t: math.exp(rung.top.get(t, floor)) for t in base.top}
    p_tail = max(1.0 - sum(p.values()), 0.0)
    q_tail = max(1.0 - sum(q.values()), TAIL_FLOOR)
    kl = sum(pt * math.log(pt / q[t]) for t, pt in p.items() if pt > 0)
    if p_tail > 0:
        kl += p_tail * math.log(p_tail / q_tail)
    return max(kl, 0.0)


def eval_chunks(text_path: Path | None, chunk_chars: int) -> list[str]:
    """The evaluation text (minus an HTML comment header) packed paragraph-wise into chunks."""
    text = (text_path or EVAL_TEXT).read_text()
    if text.startswith("<!--"):
        text = text.split("-->", 1)[1]
    chunks: list[str] = []
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        if chunks and len(chunks[-1]) + len(para) + 2 <= chunk_chars:
            chunks[-1] += "\n\n" + para
        else:
            chunks.append(para)
    return chunks


def save_positions(path: Path, positions: Sequence[Position]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [[p.actual, p.actual_logprob, sorted(p.top.items())] for p in positions]
    path.write_text(json.dumps(rows))


def load_positions(path: Path) -> list[Position]:
    return [Position(a, lp, {int(t): v for t, v in top}) for a, lp, top in json.loads(path.read_text())]


class Agreement(BaseModel):
    """A rung against the baseline over the same prompt tokens."""

    tokens: int
    perplexity: float
    baseline_perplexity: float
    mean_kl: float
    p99_kl: float
    same_top: float
    """Share of positions where both put the same token first."""
    reference: str | None = None
    """What the rung was compared with when it is not the baseline's prompt logprobs over HTTP (llama.cpp rungs:
    the baseline model's F16 GGUF, by llama-perplexity)."""

    @computed_field
    @property
    def perplexity_ratio(self) -> float:
        return self.perplexity / self.baseline_perplexity

    @computed_field
    @property
    def same_top_ci95(self) -> tuple[float, float]:
        return wilson_interval(round(self.same_top * self.tokens), self.tokens)


def agreement(base: Sequence[Position], rung: Sequence[Position]) -> Agreement:
    if len(base) != len(rung) or any(b.actual != r.actual for b, r in zip(base, rung, strict=True)):
        raise ValueError("baseline and rung logprobs cover different token sequences (different tokenizers?)")
    if not base:
        raise ValueError("no prompt positions to compare")
    kls = sorted(kl_divergence(b, r) for b, r in zip(base, rung, strict=True))
    same = sum(b.argmax == r.argmax for b, r in zip(base, rung, strict=True))
    return Agreement(
        tokens=len(base),
        perplexity=perplexity(rung),
        baseline_perplexity=perplexity(base),
        mean_kl=statistics.fmean(kls),
        p99_kl=kls[min(len(kls) - 1, math.ceil(0.99 * len(kls)) - 1)],
        same_top=same / len(base),
    )
