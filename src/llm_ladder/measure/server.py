"""Measuring one running server: warmup, the plan's workloads over trials with spec-decode counters around
each, the prompt logprobs of the evaluation text, then the task suites."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from llm_ladder.engines.base import Capabilities, Engine
from llm_ladder.measure.client import RequestRecord, Streamer, stream_chat
from llm_ladder.measure.energy import EnergySource, open_energy_source
from llm_ladder.measure.metrics import SpecStats, Trials, WorkloadStats, parse_spec_counters, summarize
from llm_ladder.measure.phases import Phases
from llm_ladder.measure.request import REQUEST_TIMEOUT, request_body
from llm_ladder.plan.schema import Plan, Workload
from llm_ladder.quality.agreement import Position, eval_chunks, parse_prompt_logprobs, perplexity
from llm_ladder.quality.evaluation import run_suites
from llm_ladder.quality.suites import ItemResult, Suite


async def scrape_spec(http: httpx.AsyncClient, base_url: str, prefix: str | None = "vllm:") -> SpecStats | None:
    """Spec counters from /metrics (names after `prefix`); None when the server or its engine exposes none."""
    if prefix is None:
        return None
    try:
        resp = await http.get(f"{base_url}/metrics")
    except httpx.HTTPError:
        return None
    return parse_spec_counters(resp.text, prefix) if resp.status_code == 200 else None


@dataclass
class WorkloadResult:
    stats: WorkloadStats
    records: list[RequestRecord]
    spec: SpecStats | None


@dataclass
class Target:
    """The server being measured, and what its engine can do (None: an OpenAI server of unknown kind, sent
    vLLM's extensions)."""

    base_url: str
    model: str
    engine: Engine | None = None

    @property
    def caps(self) -> Capabilities:
        from llm_ladder.engines.vllm import VllmEngine

        return (self.engine or VllmEngine).capabilities

    def extras(self, workload: Workload) -> dict | None:
        return self.engine.request_extras(workload) if self.engine else None


async def _run_workload(
    http: httpx.AsyncClient,
    streamer: Streamer,
    target: Target,
    workload: Workload,
    trials: Trials,
    on_record: Callable[[RequestRecord], None],
    energy: EnergySource | None = None,
    phases: Phases | None = None,
) -> WorkloadResult:
    base_url, model = target.base_url, target.model
    phases = phases or Phases()
    prefix = target.caps.spec_metrics
    with phases(f"workload {workload.name}"):
        before = await scrape_spec(http, base_url, prefix)
        joules = energy.joules() if energy else None
        records: list[RequestRecord] = []
        for trial in range(trials.most):
            seed = workload.seed + trial
            record = await stream_chat(streamer, base_url, model, workload, trial, seed, target.extras(workload))
            on_record(record)
            records.append(record)
            if trials.settled([r.decode_tps for r in records]):
                break
        joules = energy.joules() - joules if energy and joules is not None else None
        after = await scrape_spec(http, base_url, prefix)
    spec = after - before if before is not None and after is not None else None
    stats = summarize(records)
    tokens = sum(r.completion_tokens or 0 for r in records if r.ok)
    stats.energy_j_per_token = joules / tokens if joules is not None and tokens else None
    return WorkloadResult(stats, records, spec)


async def prompt_logprobs_each(
    http: httpx.AsyncClient, base_url: str, model: str, texts: list[str] | list[list[int]], k: int
) -> list[list[Position]]:
    """Top-k prompt logprobs of every token of each text (or token-id list), all in one /v1/completions request:
    a batch of prompts, each keeping its own context (so the figures are those of one request per text),
    prefilled together instead of one round trip and one mostly idle forward pass per text."""
    if not texts:
        return []
    extras = {"prompt_logprobs": k, "return_token_ids": True}  # vLLM's extensions (Capabilities.prompt_logprobs)
    body = request_body(model, texts, 1, endpoint="completions", extras=extras, temperature=0)
    resp = await http.post(f"{base_url}/v1/completions", json=body)
    if resp.status_code != 200:
        raise RuntimeError(f"prompt logprobs: HTTP {resp.status_code}: {resp.text[:200]}")
    choices = sorted(resp.json()["choices"], key=lambda c: c["index"])
    if len(choices) != len(texts):
        raise RuntimeError(f"prompt logprobs: {len(texts)} prompts sent, {len(choices)} choices returned")
    return [parse_prompt_logprobs(c["prompt_logprobs"], c["prompt_token_ids"], k) for c in choices]


async def prompt_logprobs(
    http: httpx.AsyncClient, base_url: str, model: str, chunks: list[str], k: int
) -> list[Position]:
    """Top-k prompt logprobs of every token of `chunks`, in order (one request for all of them)."""
    return [p for each in await prompt_logprobs_each(http, base_url, model, chunks, k) for p in each]


async def score_answers(http: httpx.AsyncClient, target: Target, records: list[RequestRecord]) -> None:
    """Each answer's perplexity under the rung's own model (`RequestRecord.output_perplexity`), in one request."""
    answered = [r for r in records if r.ok and r.text.strip()]
    scored = await prompt_logprobs_each(http, target.base_url, target.model, [r.text for r in answered], k=1)
    for record, positions in zip(answered, scored, strict=True):
        record.output_perplexity = perplexity(positions) if positions else None


@dataclass
class Measured:
    """A rung's measurements: the workloads, its prompt logprobs and task-suite items when the plan asks."""

    workloads: dict[str, WorkloadResult]
    positions: list[Position] | None
    items: dict[str, list[ItemResult]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Quality work left out by `--quick` (QUICK_SKIPS), each with why."""


QUICK_SKIPS = ("answers' perplexity", "task suites")


@dataclass
class Sinks:
    """Where measurements go as they are made (the run directory's append-only files)."""

    on_record: Callable[[RequestRecord], None] = lambda record: None
    on_item: Callable[[ItemResult], None] = lambda item: None
    on_load: Callable[[RequestRecord], None] = lambda record: None
    phases: Phases = field(default_factory=Phases)
    """The rung's phase timings (measure/phases.py), added to as each phase ends."""
    on_phase: Callable[[str, str], None] = lambda rung, phase: None
    """A rung's phase begins (the progress display's current phase and expected time)."""
    on_rung: Callable[[str, float], None] = lambda rung, seconds: None
    """A rung is recorded, after this many seconds."""


Gate = Callable[[list[Position]], str | None]
"""Given a rung's prompt logprobs, why the rest of its quality work can be skipped (`--quick`), or None."""


WARMUP_TOKENS = 64
"""A warmup request pays the first request's one-time costs; more tokens than this only cost time (a `long`
first workload made it a 512-token request: 24–31 s on vLLM CPU)."""


async def _warmup(streamer: Streamer, target: Target, plan: Plan) -> None:
    first = plan.workloads[0]
    warm = first.model_copy(update={"max_tokens": min(first.max_tokens, WARMUP_TOKENS), "min_tokens": 0})
    for i in range(plan.warmup_requests):
        record = await stream_chat(
            streamer, target.base_url, target.model, warm, -1 - i, warm.seed, target.extras(warm)
        )
        if not record.ok:
            raise RuntimeError(f"warmup request failed: {record.error}")


def _scores_answers(target: Target, plan: Plan) -> bool:
    return plan.agreement.enabled and plan.agreement.score_outputs and target.caps.prompt_logprobs


async def _quality_after(
    http: httpx.AsyncClient, target: Target, plan: Plan, suites: list[Suite], sinks: Sinks, measured: Measured
) -> None:
    """Answer scoring (after every workload's counters: scoring drafts nothing) and the task suites."""
    if _scores_answers(target, plan):
        workloads = measured.workloads.values()
        with sinks.phases("answer scoring"):
            await score_answers(http, target, [r for w in workloads for r in w.records])
        for w in workloads:
            w.stats.output_perplexity = summarize(w.records).output_perplexity
    one_at_a_time = plan.suites.model_copy(update={"concurrency": 1})  # see Capabilities.batch_invariant
    with sinks.phases("suites"):
        spec = plan.suites if target.caps.batch_invariant else one_at_a_time
        measured.items = await run_suites(http, target.base_url, target.model, suites, spec, sinks.on_item)


def _skipped(target: Target, plan: Plan, suites: list[Suite], why: str) -> dict[str, str]:
    runs = (_scores_answers(target, plan), bool(suites))
    return {what: why for what, ran in zip(QUICK_SKIPS, runs, strict=True) if ran}


async def _measure(
    target: Target, plan: Plan, suites: list[Suite], sinks: Sinks, energy: EnergySource | None, gate: Gate | None
) -> Measured:
    spec, phases = plan.agreement, sinks.phases
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http, Streamer() as streamer:
        with phases("warmup"):
            await _warmup(streamer, target, plan)
        chunks = eval_chunks(spec.text, spec.chunk_chars) if spec.enabled and target.caps.prompt_logprobs else []
        with phases("agreement"):
            positions = (
                await prompt_logprobs(http, target.base_url, target.model, chunks, spec.top_k) if chunks else None
            )
        skip = gate(positions) if gate and positions else None
        trials = Trials(plan.trials, plan.min_trials)
        workloads = {
            w.name: await _run_workload(http, streamer, target, w, trials, sinks.on_record, energy, phases)
            for w in plan.workloads
        }
        measured = Measured(workloads, positions)
        if skip:
            measured.skipped = _skipped(target, plan, suites, skip)
        else:
            await _quality_after(http, target, plan, suites, sinks, measured)
        return measured


def measure_server(target: Target, plan: Plan, suites: list[Suite], sinks: Sinks, gate: Gate | None = None) -> Measured:
    """Warm up (not counted), read the prompt logprobs of the evaluation text, run each workload's trials one
    request at a time, score the answers, then answer the task suites (greedy, several items in flight). Energy
    per output token is read around each workload where the host has a counter. A `gate` that finds the
    agreement outside the budget skips the answer scoring and the suites (`Measured.skipped` says why)."""
    energy = open_energy_source()
    try:
        return asyncio.run(_measure(target, plan, suites, sinks, energy, gate))
    finally:
        if energy is not None:
            energy.close()
