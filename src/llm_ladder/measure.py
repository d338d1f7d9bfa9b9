"""Measuring one running server: warmup, the plan's workloads over trials, spec-decode counters around each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from llm_ladder.client import RequestRecord, stream_chat
from llm_ladder.metrics import SpecStats, WorkloadStats, parse_spec_counters, summarize
from llm_ladder.plan import Plan, Workload

REQUEST_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=10.0)


async def scrape_spec(http: httpx.AsyncClient, base_url: str) -> SpecStats | None:
    """Spec counters from /metrics; None when the server exposes no metrics endpoint."""
    try:
        resp = await http.get(f"{base_url}/metrics")
    except httpx.HTTPError:
        return None
    return parse_spec_counters(resp.text) if resp.status_code == 200 else None


class WorkloadResult:
    def __init__(self, stats: WorkloadStats, records: list[RequestRecord], spec: SpecStats | None) -> None:
        self.stats, self.records, self.spec = stats, records, spec


async def _run_workload(
    http: httpx.AsyncClient,
    base_url: str,
    model: str,
    workload: Workload,
    trials: int,
    on_record: Callable[[RequestRecord], None],
) -> WorkloadResult:
    before = await scrape_spec(http, base_url)
    records = []
    for trial in range(trials):
        record = await stream_chat(http, base_url, model, workload, trial, seed=workload.seed + trial)
        on_record(record)
        records.append(record)
    after = await scrape_spec(http, base_url)
    spec = after - before if before is not None and after is not None else None
    return WorkloadResult(summarize(records), records, spec)


async def _measure(
    base_url: str, model: str, plan: Plan, on_record: Callable[[RequestRecord], None]
) -> dict[str, WorkloadResult]:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
        for i in range(plan.warmup_requests):
            warm = plan.workloads[0]
            record = await stream_chat(http, base_url, model, warm, trial=-1 - i, seed=warm.seed)
            if not record.ok:
                raise RuntimeError(f"warmup request failed: {record.error}")
        return {w.name: await _run_workload(http, base_url, model, w, plan.trials, on_record) for w in plan.workloads}


def measure_server(
    base_url: str, model: str, plan: Plan, on_record: Callable[[RequestRecord], None]
) -> dict[str, WorkloadResult]:
    """Warm up (not counted), then run each workload `plan.trials` times, one request at a time."""
    return asyncio.run(_measure(base_url, model, plan, on_record))
