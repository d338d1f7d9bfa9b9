"""The load generator: sends a dataset's requests to an OpenAI-compatible server in one load shape, timing every
chunk. Bounded in count and in time; warmup and cooldown requests are recorded but left out of the statistics.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from llm_ladder.load.arrivals import LoadShape, send_offsets
from llm_ladder.load.prompts import BenchRequest
from llm_ladder.measure.client import RequestRecord, Streamer
from llm_ladder.measure.request import Endpoint, request_body, url

Phase = Literal["warmup", "measured", "cooldown"]


class LoadRecord(RequestRecord):
    """A request of a load run, with its place in the run."""

    index: int
    phase: Phase = "measured"


class LoadRun(BaseModel):
    """Every request of one load level, in the order they were sent."""

    shape: LoadShape
    endpoint: Endpoint
    records: list[LoadRecord]
    wall_s: float
    stopped_by: Literal["max_requests", "duration"]

    @property
    def measured(self) -> list[LoadRecord]:
        return [r for r in self.records if r.phase == "measured"]


def bench_body(model: str, endpoint: Endpoint, req: BenchRequest, temperature: float) -> dict[str, Any]:
    extras = {"ignore_eos": True} if req.ignore_eos else None  # vLLM's extension, as vllm bench sends it
    return request_body(model, req.prompt, req.max_tokens, endpoint=endpoint, stream=True, extras=extras,
                        temperature=temperature)  # fmt: skip


class _Sender:
    """Sends requests and keeps their records; the concurrency gate is released whatever happens."""

    def __init__(self, streamer: Streamer, url: str, bodies: list[dict[str, Any]], timeout_s: float) -> None:
        self.streamer, self.url, self.bodies, self.timeout_s = streamer, url, bodies, timeout_s
        self.records: list[LoadRecord] = []

    async def send(
        self, index: int, phase: Phase, gate: asyncio.Semaphore | None, on_record: Callable[[LoadRecord], None]
    ) -> None:
        record = LoadRecord(workload="load", trial=index, index=index, phase=phase)
        self.records.append(record)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.streamer.stream(self.url, self.bodies[index % len(self.bodies)], record)
        except TimeoutError:
            record.fail("timeout", f"no complete answer within {self.timeout_s:g} s")
            record.e2e_s = time.perf_counter() - (record.start_s or time.perf_counter())
        finally:
            if gate is not None:
                gate.release()
        on_record(record)


def mark_phases(records: list[LoadRecord], warmup: int, cooldown: int) -> None:
    """The first `warmup` requests sent and the last `cooldown` sent are not measured (ramp-up and drain)."""
    ordered = sorted(records, key=lambda r: r.index)
    for i, record in enumerate(ordered):
        record.phase = "warmup" if i < warmup else "cooldown" if i >= len(ordered) - cooldown else "measured"


async def run_load(
    streamer: Streamer,
    base_url: str,
    model: str,
    requests: list[BenchRequest],
    shape: LoadShape,
    *,
    endpoint: Endpoint = "chat",
    max_requests: int = 100,
    duration_s: float | None = None,
    warmup: int = 0,
    cooldown: int = 0,
    temperature: float = 0.0,
    request_timeout_s: float = 600.0,
    on_record: Callable[[LoadRecord], None] = lambda r: None,
) -> LoadRun:
    """Send up to `max_requests` (and for at most `duration_s`), paced by the shape; then wait for those in
    flight (each bounded by `request_timeout_s`)."""
    if not requests:
        raise ValueError("no requests to send")
    bodies = [bench_body(model, endpoint, r, temperature) for r in requests]
    sender = _Sender(streamer, url(base_url, endpoint), bodies, request_timeout_s)
    offsets = send_offsets(max_requests, shape.rate, shape.burstiness, shape.seed) if shape.rate else None
    gate = asyncio.Semaphore(shape.concurrency) if shape.concurrency else None
    start = time.perf_counter()
    deadline = start + duration_s if duration_s else math.inf
    tasks, stopped_by = [], "max_requests"
    for i in range(max_requests):
        if offsets is not None:
            await asyncio.sleep(max(0.0, start + offsets[i] - time.perf_counter()))
        if gate is not None:
            await gate.acquire()
        if time.perf_counter() >= deadline:
            stopped_by = "duration"
            if gate is not None:
                gate.release()
            break
        phase: Phase = "warmup" if i < warmup else "cooldown" if i >= max_requests - cooldown else "measured"
        tasks.append(asyncio.create_task(sender.send(i, phase, gate, on_record)))
    await asyncio.gather(*tasks)
    mark_phases(sender.records, warmup, cooldown)  # a duration stop moves the cooldown to the last ones sent
    records = sorted(sender.records, key=lambda r: r.index)
    return LoadRun(
        shape=shape, endpoint=endpoint, records=records, wall_s=time.perf_counter() - start, stopped_by=stopped_by
    )
