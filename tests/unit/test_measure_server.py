"""Measuring one server (measure/server.py): the quantities derived from what the workloads return."""

import asyncio

import httpx

from llm_ladder.measure.client import Streamer
from llm_ladder.measure.request import REQUEST_TIMEOUT
from llm_ladder.measure.server import Target, _run_workload
from llm_ladder.plan.schema import Workload
from llm_ladder.testing.mock_server import MockServer, Script


class Meter:
    """An energy counter that reads 100 J, then 100 J more at every reading after."""

    name = "test"

    def __init__(self) -> None:
        self.readings = iter([1000.0, 1100.0])

    def joules(self) -> float:
        return next(self.readings)

    def close(self) -> None:
        pass


def test_energy_per_token_is_the_joules_of_the_workload_over_its_output_tokens():
    workload = Workload(name="w", prompt="hi", max_tokens=20, temperature=0.0)

    async def go(url):
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http, Streamer() as streamer:
            return await _run_workload(http, streamer, Target(url, "mock"), workload, 2, lambda r: None, False, Meter())

    with MockServer(Script(tokens=20, ttft_ms=1, itl_ms=1)) as srv:
        result = asyncio.run(go(srv.url))
    assert sum(r.completion_tokens for r in result.records) == 40
    assert result.stats.energy_j_per_token == 100 / 40
