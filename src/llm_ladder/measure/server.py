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
from llm_ladder.measure.metrics import SpecStats, WorkloadStats, parse_spec_counters, summarize
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
    trials: int,
    on_record: Callable[[RequestRecord], None],
    score: bool = False,
    energy: EnergySource | None = None,
    phases: Phases | None = None,
) -> WorkloadResult:
    base_url, model = target.base_url, target.model
    phases = phases or Phases()
    prefix = target.caps.spec_metrics
    with phases(f"workload {workload.name}"):
        before = await scrape_spec(http, base_url, prefix)
        joules = energy.joules() if energy else None
        records = []
        for trial in range(trials):
            seed = workload.seed + trial
            record = await stream_chat(streamer, base_url, model, workload, trial, seed, target.extras(workload))
            on_record(record)
            records.append(record)
        joules = energy.joules() - joules if energy and joules is not None else None
        after = await scrape_spec(http, base_url, prefix)
    spec = after - before if before is not None and after is not None else None
    if score and target.caps.prompt_logprobs:  # after the counters: scoring must not count as the workload's drafts
        with phases("answer scoring"):
            for record in records:
                if record.ok and record.text.strip():
                    positions = await prompt_logprobs(http, base_url, model, [record.text], k=1)
                    record.output_perplexity = perplexity(positions) if positions else None
    stats = summarize(records)
    tokens = sum(r.completion_tokens or 0 for r in records if r.ok)
    stats.energy_j_per_token = joules / tokens if joules is not None and tokens else None
    return WorkloadResult(stats, records, spec)


async def prompt_logprobs(
    http: httpx.AsyncClient, base_url: str, model: str, chunks: list[str], k: int
) -> list[Position]:
    """Top-k prompt logprobs of every token of `chunks` (one /v1/completions request per chunk)."""
    positions: list[Position] = []
    for chunk in chunks:
        extras = {"prompt_logprobs": k, "return_token_ids": True}  # vLLM's extensions (Capabilities.prompt_logprobs)
        body = request_body(model, chunk, 1, endpoint="completions", extras=extras, temperature=0)
        resp = await http.post(f"{base_url}/v1/completions", json=body)
        if resp.status_code != 200:
            raise RuntimeError(f"prompt logprobs: HTTP {resp.status_code}: {resp.text[:200]}")
        choice = resp.json()["choices"][0]
        positions += parse_prompt_logprobs(choice["prompt_logprobs"], choice["prompt_token_ids"], k)
    return positions


@dataclass
class Measured:
    """A rung's measurements: the workloads, its prompt logprobs and task-suite items when the plan asks."""

    workloads: dict[str, WorkloadResult]
    positions: list[Position] | None
    items: dict[str, list[ItemResult]] = field(default_factory=dict)


@dataclass
class Sinks:
    """Where measurements go as they are made (the run directory's append-only files)."""

    on_record: Callable[[RequestRecord], None] = lambda record: None
    on_item: Callable[[ItemResult], None] = lambda item: None
    on_load: Callable[[RequestRecord], None] = lambda record: None
    phases: Phases = field(default_factory=Phases)
    """The rung's phase timings (measure/phases.py), added to as each phase ends."""


async def _measure(
    target: Target, plan: Plan, suites: list[Suite], sinks: Sinks, energy: EnergySource | None
) -> Measured:
    base_url, model, on_record, phases = target.base_url, target.model, sinks.on_record, sinks.phases
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http, Streamer() as streamer:
        with phases("warmup"):
            for i in range(plan.warmup_requests):
                warm = plan.workloads[0]
                record = await stream_chat(streamer, base_url, model, warm, -1 - i, warm.seed, target.extras(warm))
                if not record.ok:
                    raise RuntimeError(f"warmup request failed: {record.error}")
        spec = plan.agreement
        score = spec.enabled and spec.score_outputs
        workloads = {
            w.name: await _run_workload(http, streamer, target, w, plan.trials, on_record, score, energy, phases)
            for w in plan.workloads
        }
        chunks = eval_chunks(spec.text, spec.chunk_chars) if spec.enabled and target.caps.prompt_logprobs else []
        with phases("agreement"):
            positions = await prompt_logprobs(http, base_url, model, chunks, spec.top_k) if chunks else None
        one_at_a_time = plan.suites.model_copy(update={"concurrency": 1})  # see Capabilities.batch_invariant
        suites_spec = plan.suites if target.caps.batch_invariant else one_at_a_time
        with phases("suites"):
            items = await run_suites(http, base_url, model, suites, suites_spec, sinks.on_item)
        return Measured(workloads, positions, items)


def measure_server(target: Target, plan: Plan, suites: list[Suite], sinks: Sinks) -> Measured:
    """Warm up (not counted), run each workload `plan.trials` times one request at a time, read the prompt
    logprobs of the evaluation text, then answer the task suites (greedy, several items in flight). Energy per
    output token is read around each workload where the host has a counter."""
    energy = open_energy_source()
    try:
        return asyncio.run(_measure(target, plan, suites, sinks, energy))
    finally:
        if energy is not None:
            energy.close()
