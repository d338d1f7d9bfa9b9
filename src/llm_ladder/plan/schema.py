"""Plans: a model family's ladder of rungs, the workloads measured on each, the quality budget (files: loading.py).

A plan is user input, so every model forbids unknown keys and errors name the offending field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm_ladder.plan.workshop import EDIT_PROMPT, LONG_PROMPT, WORKSHOP_PROMPT

SETTINGS_NOT_AFFECTING_OUTPUT = {"name", "served_name", "speculative", "expect_log", "startup_timeout_s"}
ARGS_NOT_AFFECTING_OUTPUT = {"trust_remote_code"}
SPEC_METHODS = {"ngram", "draft_model", "eagle", "eagle3", "medusa", "mtp", "suffix"}


class PlanError(ValueError):
    """A plan that cannot be used; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(Strict):
    """One chat request shape, sent `trials` times per rung with seeds seed, seed+1, ..."""

    name: str
    prompt: str
    max_tokens: int = Field(gt=0)
    min_tokens: int = Field(default=0, ge=0)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0

    @model_validator(mode="after")
    def _min_le_max(self) -> Workload:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self


DEFAULT_WORKLOADS = (
    Workload(name="short", prompt=WORKSHOP_PROMPT, max_tokens=256, temperature=0.7),
    # min_tokens keeps the output long without ignore_eos; sampling (not greedy) keeps a small model out of
    # the repetition loops that make n-gram speculation look miraculous.
    Workload(name="long", prompt=LONG_PROMPT, max_tokens=512, min_tokens=512, temperature=0.7),
    # Sampled, at the low temperature edits are run with: the answer should be the passage, changed as asked.
    # Measured here (int4 target, n-gram 4 tokens): at 0.7 the 135M model wanders off the copy (acceptance 52%,
    # 1.41×), at 0.3 it copies (88%, 2.31×), greedy 98% (2.66×). At least 256 tokens; EOS ends it after the copy.
    Workload(name="edit", prompt=EDIT_PROMPT, max_tokens=512, min_tokens=256, temperature=0.3),
)


class AgreementSpec(Strict):
    """Prompt logprobs of every rung on one fixed text, compared with the baseline's (see agreement.py)."""

    enabled: bool = True
    top_k: int = Field(default=10, ge=1, le=20)
    """Candidates per position; vLLM serves at most 20 (its max_logprobs) unless started otherwise."""
    text: Path | None = None
    """A UTF-8 text file; default: the public-domain text shipped with llm-ladder (2,088 SmolLM2 tokens)."""
    chunk_chars: int = Field(default=2500, ge=200)
    """Paragraphs are packed into requests of at most this many characters, to stay inside max_model_len."""
    score_outputs: bool = True
    """Also score every generated answer with the rung's own model (its perplexity): text the model would not
    write itself means broken sampling, which prompt logprobs cannot see."""


class SuitesSpec(Strict):
    """Task suites run on every rung with greedy decoding (see suites.py)."""

    enabled: bool = True
    names: tuple[str, ...] = ("instructions", "exact")
    """Shipped suites by name, or YAML files of the same shape."""
    concurrency: int = Field(default=32, ge=1, le=256)
    """Items in flight at once: the suites are throughput work, and batching keeps them short. Measured on vLLM
    CPU (2 cores, AMX, the 88 shipped items): bf16 answers them in 35–45 s with 8 in flight, 21–27 s with 16,
    14–22 s with 32; int4 (torchao) in 50–56 s at 8 or 32. Greedy answers compared between fresh servers: int4
    against int4 + n-gram 88/88 identical at 32; bf16 against itself 64/88 at 8 and 76/88 at 32 (its kernels
    round differently with the batch's shape, whatever the concurrency above 1)."""
    seed: int = 0
    limit: int | None = Field(default=None, ge=1)
    """Only the first N items of each suite (quick runs and tests)."""


class LoadSpec(Strict):
    """A load sweep run on every rung after its other measurements (see sweep.py and `ladder bench`)."""

    dataset: Literal["workshop", "random", "sharegpt", "jsonl"] = "random"
    dataset_path: Path | None = None
    input_len: int = Field(default=128, ge=1)
    output_len: int = Field(default=64, ge=1)
    concurrency: tuple[int, ...] = (1, 4)
    """A sweep over these concurrencies, or the cap of a rate sweep."""
    rate: tuple[float, ...] = ()
    """Requests/s (a sweep); empty for a concurrency sweep."""
    burstiness: float = Field(default=1.0, gt=0)
    endpoint: Literal["chat", "completions"] = "chat"
    max_requests: int = Field(default=16, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    warmup: int | None = Field(default=None, ge=0)
    cooldown: int | None = Field(default=None, ge=0)
    slo: dict[Literal["ttft", "tpot", "e2el"], float] = {}
    """Goodput limits in milliseconds."""
    seed: int = 0

    @model_validator(mode="after")
    def _one_cap(self) -> LoadSpec:
        if self.rate and len(self.concurrency) > 1:
            raise ValueError("with `rate`, `concurrency` is one cap (a list of one), not a sweep")
        return self


Objective = Literal["decode_tps_long", "decode_tps_short", "ttft_ms"]


def objective_workload(objective: Objective) -> str:
    """The workload an objective is measured on: decode_tps_<name>, and TTFT on the short (chat-like) one."""
    return objective.removeprefix("decode_tps_") if objective.startswith("decode_tps_") else "short"


class QualityBudget(Strict):
    """How far a rung may drift from the baseline and still be recommended.

    Defaults sit between llama.cpp's figures for Q8_0 (mean KL ~0.0002, same top token ~99%) and its 4-bit
    K-quants (mean KL a few hundredths, same top ~90-93%).
    """

    max_perplexity_ratio: float = Field(default=1.05, ge=1)
    max_mean_kl: float = Field(default=0.05, ge=0)
    min_same_top: float = Field(default=0.90, ge=0, le=1)
    max_accuracy_drop: float = Field(default=10.0, ge=0, le=100)
    """Points of accuracy a rung may lose against the baseline on each task suite (strict accuracy)."""
    min_greedy_identity: float = Field(default=0.9, ge=0, le=1)
    """Share of a speculative rung's greedy answers identical to its model's without speculation; lossless
    speculation gives 100%, and anything less is flagged. Below this it is rejected: near-ties broken
    differently by batched verification explain a few items, not many."""
    max_output_perplexity_ratio: float = Field(default=4.0, ge=1)
    """A rung's answers scored by its own model, against the baseline's answers scored by the baseline: a
    large ratio means the rung writes text its model finds implausible (broken sampling or speculation)."""


class Rung(Strict):
    """One engine configuration: a portable core, and `args` the engine validates (engines/*: `Args` models).

    In YAML a rung is flat: keys that are not core fields (vLLM's `dtype`, llama.cpp's `threads`, ...) are the
    engine's args, checked against the rung's engine when the plan loads."""

    name: str
    model: str
    served_name: str | None = None
    engine: str | None = None
    """This rung's engine when it differs from the plan's: one plan can compare engines."""
    speculative: dict[str, Any] | None = None
    """Speculation intent, vLLM's vocabulary (`method`, `num_speculative_tokens`, `model`, ...): vLLM takes it
    as is, other engines translate it."""
    env: dict[str, str] = Field(default_factory=dict)
    extra_args: list[str] = Field(default_factory=list)
    expect_log: list[str] = Field(default_factory=list)
    """Regexes that must all appear in the engine log: proof that the rung really runs as labelled."""
    startup_timeout_s: float = Field(default=900, gt=0)
    args: dict[str, Any] = Field(default_factory=dict)
    """Engine-specific settings (flat keys in YAML), validated by the engine's `Args` model."""

    @model_validator(mode="before")
    @classmethod
    def _collect_args(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        core = set(cls.model_fields) - {"args"}
        args = dict(data.get("args") or {}) | {k: v for k, v in data.items() if k not in core and k != "args"}
        return {k: v for k, v in data.items() if k in core} | {"args": args}

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise ValueError(f"rung name {v!r} must be letters, digits, '.', '_' or '-'")
        return v

    @field_validator("speculative")
    @classmethod
    def _spec(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and v.get("method") not in SPEC_METHODS:
            raise ValueError(f"speculative.method must be one of {sorted(SPEC_METHODS)}, got {v.get('method')!r}")
        return v

    @field_validator("expect_log")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"expect_log pattern {pattern!r} is not a valid regex: {exc}") from None
        return v

    @property
    def label(self) -> str:
        return self.served_name or self.model


class Choice(Strict):
    """One rung `ladder plan auto` considered: in or out, and why."""

    rung: str
    included: bool
    reason: str


class Selection(Strict):
    """Why a plan has the rungs it has, when `ladder plan auto` chose them for a machine."""

    hardware: str
    choices: tuple[Choice, ...]


class Plan(Strict):
    """A ladder: the first rung is the quality and speed baseline."""

    name: str
    description: str = ""
    engine: str = "vllm"
    trials: int = Field(default=3, ge=1)
    """Requests per workload per rung: all of them unless `min_trials` is set."""
    min_trials: int | None = Field(default=None, ge=1)
    """Let a workload stop before `trials` once its median is settled (the last 3 decode rates within ±3% of their
    median, measure.metrics.Trials), never before this many; unset: every trial runs."""
    warmup_requests: int = Field(default=1, ge=0)
    workloads: tuple[Workload, ...] = DEFAULT_WORKLOADS
    agreement: AgreementSpec = AgreementSpec()
    suites: SuitesSpec = SuitesSpec()
    load: LoadSpec | None = None
    quality_budget: QualityBudget = QualityBudget()
    objective: Objective = "decode_tps_long"
    memory_bandwidth_gbs: float | None = Field(default=None, gt=0)
    """For the roofline; by default a known device's datasheet figure, or measured on a CPU host."""
    rungs: tuple[Rung, ...] = Field(min_length=1)
    selection: Selection | None = None
    """Set by `ladder plan auto`: the hardware read and each rung's reason; recorded in the results."""

    @model_validator(mode="after")
    def _unique(self) -> Plan:
        for kind, names in (
            ("rung", [r.name for r in self.rungs]),
            ("workload", [w.name for w in self.workloads]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _engine_args(self) -> Plan:
        """Each rung's args through its engine's `Args` model (unknown keys and bad values are errors here, not
        when the rung starts); stored back in the normalized form."""
        from llm_ladder.engines.base import EngineError, engine_class

        rungs = []
        for i, rung in enumerate(self.rungs):
            try:
                engine = engine_class(rung.engine or self.engine)
            except EngineError as err:
                raise ValueError(f"rungs.{i} ({rung.name}): {err}") from None
            try:
                args = engine.validate_args(rung.args)
            except EngineError as err:
                raise ValueError(f"rungs.{i}.{err}") from None
            rungs.append(rung.model_copy(update={"args": args}))
        object.__setattr__(self, "rungs", tuple(rungs))
        return self

    def engine_of(self, rung: Rung) -> str:
        """The engine that serves `rung`: its own, else the plan's."""
        return rung.engine or self.engine

    @model_validator(mode="after")
    def _trials(self) -> Plan:
        if self.min_trials is not None and self.min_trials > self.trials:
            raise ValueError(f"min_trials ({self.min_trials}) exceeds trials ({self.trials})")
        return self

    @model_validator(mode="after")
    def _objective_has_its_workload(self) -> Plan:
        needed = objective_workload(self.objective)
        names = [w.name for w in self.workloads]
        if needed not in names:
            raise ValueError(
                f"objective {self.objective!r} needs a workload named {needed!r} (workloads: {', '.join(names)}); "
                "set `objective` or rename a workload"
            )
        return self

    @property
    def baseline(self) -> Rung:
        return self.rungs[0]

    def objective_only(self) -> tuple[Plan, list[str]]:
        """The plan with only the workload its objective is measured on (`--quick`), and the ones left out."""
        keep = objective_workload(self.objective)
        dropped = [w.name for w in self.workloads if w.name != keep]
        return self.model_copy(update={"workloads": tuple(w for w in self.workloads if w.name == keep)}), dropped

    def select(self, rungs: list[str] | None = None, trials: int | None = None) -> Plan:
        """The plan narrowed to some rungs (in the order given: the first becomes the baseline), or re-trialed."""
        update: dict[str, Any] = {}
        if rungs:
            update["rungs"] = tuple(self.rung(n) for n in rungs)
        if trials:
            update["trials"] = trials
            if self.min_trials is not None:
                update["min_trials"] = min(self.min_trials, trials)
        return self.model_copy(update=update)

    def without_speculation(self, rung: Rung) -> Rung | None:
        """The rung serving the same model, settings alike, without speculation: lossless speculation must give
        its greedy answers token for token."""

        from llm_ladder.engines.base import engine_class

        def key(r: Rung) -> dict[str, Any]:
            engine = self.engine_of(r)
            filled = engine_class(engine).args(r).model_dump()  # `enforce_eager: false` and unset are the same
            args = {k: v for k, v in filled.items() if k not in ARGS_NOT_AFFECTING_OUTPUT}
            return r.model_dump(exclude=SETTINGS_NOT_AFFECTING_OUTPUT | {"args", "engine"}) | {
                "args": args,
                "e": engine,
            }

        return next((r for r in self.rungs if r.speculative is None and key(r) == key(rung)), None)

    def rung(self, name: str) -> Rung:
        for rung in self.rungs:
            if rung.name == name:
                return rung
        raise PlanError(f"plan {self.name!r} has no rung {name!r} (rungs: {', '.join(r.name for r in self.rungs)})")
