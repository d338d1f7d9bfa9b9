"""A synthetic `ladder tune` evaluator: a seeded, noisy speed surface with a crash region and a quality cliff, so
the search, its constraints and its resume can be checked in milliseconds (tests, `bench/tune_default.py --dry`).

The surface: tokens/s = 100 × base × max_num_seqs × max_num_batched_tokens × speculation × KV dtype, each a
factor below, times log-normal noise (σ 3%) seeded by the config and the repeat. fp8 KV is the fastest choice
and falls off the quality cliff; int4-g128 is faster than int4-g32 and outside the budget; max_num_seqs 64 and
a token budget below max_model_len (2048) do not start.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

from llm_ladder.plan.loading import parse_plan
from llm_ladder.plan.schema import Plan
from llm_ladder.tune.space import Space, Value
from llm_ladder.tune.trials import Measured, Quality

BASE = {"bf16": 1.0, "int4-g128": 1.9, "int4-g32": 1.7}
SEQS: dict[Value, float] = {None: 1.0, 8: 1.12, 32: 1.03, 64: 0.0}
TOKENS: dict[Value, float] = {None: 1.0, 1024: 0.0, 2048: 1.03}
SPEC = {"none": 1.0, "ngram-k2": 1.2, "ngram-k4": 1.3}
KV: dict[Value, float] = {None: 1.0, "fp8": 1.15}
NOISE = 0.03


def synthetic_plan() -> Plan:
    rung = {"dtype": "bfloat16", "max_model_len": 2048}
    return parse_plan(
        {
            "name": "synthetic",
            "engine": "fake-vllm",
            "trials": 3,
            "rungs": [
                {"name": "bf16", "model": "m", **rung},
                {"name": "int4-g128", "model": "m-g128", **rung},
                {"name": "int4-g32", "model": "m-g32", **rung},
                {
                    "name": "int4-g32-ngram",
                    "model": "m-g32",
                    **rung,
                    "speculative": {"method": "ngram", "num_speculative_tokens": 4},
                },
            ],
        }
    )


def synthetic_space(**update: Any) -> Space:
    return Space.model_validate(
        {
            "output": {"kv_cache_dtype": [None, "fp8"]},
            "speculative": [None, {"method": "ngram", "num_speculative_tokens": [2, 4]}],
            "speed": {"max_num_seqs": list(SEQS), "max_num_batched_tokens": list(TOKENS)},
        }
        | update
    )


def true_speed(params: dict[str, Value]) -> float:
    """The noise-free surface (0 where the config does not start)."""
    return (
        100
        * BASE[str(params["base"])]
        * SEQS[params["speed.max_num_seqs"]]
        * TOKENS[params["speed.max_num_batched_tokens"]]
        * SPEC[str(params["speculative"])]
        * KV[params["output.kv_cache_dtype"]]
    )


def inside_budget(params: dict[str, Value]) -> bool:
    return params["base"] != "int4-g128" and params["output.kv_cache_dtype"] is None


class SyntheticEvaluator:
    """Answers trials from the surface; counts what a real engine would have had to do."""

    def __init__(self, seed: int = 0, repeats: int = 3) -> None:
        self.seed, self.repeats = seed, repeats
        self.calls: list[tuple[dict[str, Value], bool]] = []
        self.references: list[str | None] = []
        """The greedy-identity reference each speculative quality measurement that started was given."""

    def evaluate(self, params: dict[str, Value], name: str, with_quality: bool, reference: str | None) -> Measured:
        self.calls.append((dict(params), with_quality))
        if with_quality and params["speculative"] != "none" and true_speed(params) > 0:
            self.references.append(reference)
        speed = true_speed(params)
        if speed == 0:
            return Measured(started=False, error="engine exited during startup (synthetic crash region)", rung=name)
        values = [speed * self._noise(params, name, i) for i in range(self.repeats)]
        measured = Measured(
            started=True,
            values=values,
            ttft_ms=[20.0] * self.repeats,
            tpot_ms=[1000 / v for v in values],
            rung=name,
            wall_s=1.0,
        )
        if with_quality:
            ok = inside_budget(params)
            measured.quality = Quality(
                accepted=ok,
                reasons=["inside"] if ok else ["mean KL 0.3 > 0.05"],
                measured_in=-1,
                same_top=0.97 if ok else 0.6,
                mean_kl=0.01 if ok else 0.3,
            )
        return measured

    def _noise(self, params: dict[str, Value], name: str, repeat: int) -> float:
        key = f"{self.seed}|{sorted(params.items(), key=str)}|{name}|{repeat}"
        rng = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))
        return math.exp(rng.gauss(0, NOISE))

    @property
    def quality_calls(self) -> int:
        return sum(1 for _, q in self.calls if q)
