"""A load sweep against one server: every load level in turn, with spec-decode counters read around each, every
request appended to `requests.jsonl` as it finishes, and `bench.json` / `bench.csv` written at the end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_ladder.load.arrivals import LoadShape
from llm_ladder.load.loadgen import Endpoint, LoadRecord, run_load
from llm_ladder.load.loadstats import knee, summarize_run, write_csv
from llm_ladder.load.prompts import BenchRequest, load_requests
from llm_ladder.measure.client import Streamer, run_fast
from llm_ladder.measure.server import scrape_spec
from llm_ladder.outputs.jsonl import append_line
from llm_ladder.plan.schema import LoadSpec


class SweepOptions(BaseModel):
    """Everything but the server and the prompts; also a plan's per-rung `load` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shapes: tuple[LoadShape, ...] = (LoadShape(concurrency=1),)
    endpoint: Endpoint = "chat"
    max_requests: int = Field(default=64, ge=1, le=100_000)
    duration_s: float | None = Field(default=None, gt=0)
    warmup: int | None = Field(default=None, ge=0)
    """Requests left out at the start of each level; default: one per concurrency slot (the ramp-up)."""
    cooldown: int | None = Field(default=None, ge=0)
    """Requests left out at the end of each level; default: as warmup (the drain)."""
    temperature: float = Field(default=0.0, ge=0)
    request_timeout_s: float = Field(default=600.0, gt=0)
    slo: dict[str, float] = {}

    def edges(self, shape: LoadShape) -> tuple[int, int]:
        """Requests left out at the start and at the end of a level."""
        edge = shape.concurrency or 0
        return (edge if self.warmup is None else self.warmup), (edge if self.cooldown is None else self.cooldown)

    @model_validator(mode="after")
    def _something_measured(self) -> SweepOptions:
        for shape in self.shapes:
            left_out = sum(self.edges(shape))
            if self.duration_s is None and left_out >= self.max_requests:
                raise ValueError(
                    f"max_requests {self.max_requests} leaves nothing to measure at {shape.label} (warmup + cooldown "
                    f"= {left_out}); send more requests or set warmup / cooldown"
                )
        return self


def _append(path: Path, record: LoadRecord, level: int) -> None:
    """Written (flushed: a crash of this process loses nothing) but not fsynced: an fsync blocks the event loop
    for milliseconds, and every stream in flight would see it as inter-token latency. The level's end syncs."""
    data = {"level": level, "type": "request", **record.model_dump(mode="json", exclude={"text"})}
    append_line(path, json.dumps(data), sync=False)


def spec_keys(before: Any, after: Any) -> dict[str, Any]:
    """Spec-decode acceptance during the level, under vllm bench's key names; empty without speculation."""
    if before is None or after is None:
        return {}
    spec = after - before
    if not spec.draft_tokens:
        return {}
    return {
        "spec_decode_acceptance_rate": spec.acceptance_rate,
        "spec_decode_acceptance_length": spec.mean_acceptance_length,
        "spec_decode_num_drafts": int(spec.drafts),
        "spec_decode_draft_tokens": int(spec.draft_tokens),
        "spec_decode_accepted_tokens": int(spec.accepted_tokens),
    }


async def _sweep(
    http: httpx.AsyncClient,
    streamer: Streamer,
    base_url: str,
    model: str,
    requests: list[BenchRequest],
    opts: SweepOptions,
    out: Path,
    on_record: Callable[[LoadRecord], None],
) -> list[dict[str, Any]]:
    levels = []
    for level, shape in enumerate(opts.shapes):
        warmup, cooldown = opts.edges(shape)
        before = await scrape_spec(http, base_url)
        run = await run_load(
            streamer,
            base_url,
            model,
            requests,
            shape,
            endpoint=opts.endpoint,
            max_requests=opts.max_requests,
            duration_s=opts.duration_s,
            warmup=warmup,
            cooldown=cooldown,
            temperature=opts.temperature,
            request_timeout_s=opts.request_timeout_s,
            on_record=lambda r, level=level: (_append(out / "requests.jsonl", r, level), on_record(r)),
        )
        if run.stopped_by == "duration":  # the lines above were written before the cooldown was known
            late = [r.index for r in run.records if r.phase == "cooldown"]
            line = {"level": level, "type": "phases", "cooldown_indices": late}
            append_line(out / "requests.jsonl", json.dumps(line))
        append_line(
            out / "requests.jsonl", json.dumps({"level": level, "type": "level_end", "requests": len(run.records)})
        )
        after = await scrape_spec(http, base_url)
        levels.append(summarize_run(run, opts.slo) | spec_keys(before, after) | {"stopped_by": run.stopped_by})
    return levels


def run_sweep(
    base_url: str,
    model: str,
    requests: list[BenchRequest],
    opts: SweepOptions,
    out: Path,
    on_record: Callable[[LoadRecord], None] = lambda r: None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run every level; returns (and writes to `out/bench.json`) the levels and the sweep's knee."""
    out.mkdir(parents=True, exist_ok=True)

    async def go() -> list[dict[str, Any]]:
        async with (
            httpx.AsyncClient(timeout=10.0, headers=headers or {}) as http,
            Streamer(headers, read_timeout_s=opts.request_timeout_s) as streamer,
        ):
            return await _sweep(http, streamer, base_url.rstrip("/"), model, requests, opts, out, on_record)

    levels = run_fast(go())
    result = {"model": model, "endpoint": opts.endpoint, "knee_concurrency": knee(levels), "levels": levels}
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    write_csv(out / "bench.csv", levels)
    return result


def options_from(spec: LoadSpec) -> SweepOptions:
    """A plan's `load` section as sweep options (a concurrency sweep, or a rate sweep capped by one concurrency)."""
    if spec.rate:
        cap = spec.concurrency[0] if spec.concurrency else None
        shapes = tuple(
            LoadShape(rate=r, concurrency=cap, burstiness=spec.burstiness, seed=spec.seed) for r in spec.rate
        )
    else:
        shapes = tuple(LoadShape(concurrency=c, seed=spec.seed) for c in spec.concurrency)
    fields = spec.model_dump(include={"endpoint", "max_requests", "duration_s", "warmup", "cooldown", "slo"})
    return SweepOptions(shapes=shapes, **fields)


def requests_from(spec: LoadSpec) -> list[BenchRequest]:
    return load_requests(spec.dataset, spec.max_requests, spec.input_len, spec.output_len, spec.seed, spec.dataset_path)
