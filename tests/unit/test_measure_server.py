"""Measuring one server (measure/server.py): the quantities derived from what the workloads return."""

import asyncio

import httpx

from llm_ladder.measure.client import Streamer
from llm_ladder.measure.metrics import Trials
from llm_ladder.measure.request import REQUEST_TIMEOUT
from llm_ladder.measure.server import Target, _run_workload, prompt_logprobs, prompt_logprobs_each
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
            return await _run_workload(
                http, streamer, Target(url, "mock"), workload, Trials(2), lambda r: None, Meter()
            )

    with MockServer(Script(tokens=20, ttft_ms=1, itl_ms=1)) as srv:
        result = asyncio.run(go(srv.url))
    assert sum(r.completion_tokens for r in result.records) == 40
    assert result.stats.energy_j_per_token == 100 / 40


class Steady(Trials):
    """The real rule, fed steady rates: wall-clock jitter on a loaded CI machine made the mock's own rates
    spread by more than 3% (a CI run failed so), and the rule itself is tested on fixed numbers below."""

    def settled(self, rates):
        self.seen = list(rates)
        return super().settled([100.0 if r else r for r in rates])


def test_a_settled_median_stops_the_trials_early_but_never_before_the_minimum():
    workload = Workload(name="w", prompt="hi", max_tokens=10, temperature=0.0)

    async def go(url, trials):
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http, Streamer() as streamer:
            return await _run_workload(http, streamer, Target(url, "mock"), workload, trials, lambda r: None)

    with MockServer(Script(tokens=10, ttft_ms=1, itl_ms=5)) as srv:
        three, four, every = Steady(6, 3), Steady(6, 4), Steady(5)
        assert len(asyncio.run(go(srv.url, three)).records) == 3
        assert len(three.seen) == 3 and all(r > 0 for r in three.seen)  # it is fed the measured decode rates
        assert len(asyncio.run(go(srv.url, four)).records) == 4
        assert len(asyncio.run(go(srv.url, every)).records) == 5  # no minimum set: every trial runs


def test_settled_means_the_last_three_rates_within_three_percent_of_their_median():
    assert Trials(9, 3).settled([100, 102, 98])
    assert not Trials(9, 3).settled([100, 104, 97])  # 104 is 4% above the median
    assert not Trials(9, 3).settled([100, 101])  # fewer than three
    assert Trials(9, 3).settled([50, 100, 101, 99])  # an early outlier ages out
    assert not Trials(9, 3).settled([100, None, 100])
    assert not Trials(9, 5).settled([100, 100, 100, 100])  # the plan's minimum comes first
    assert not Trials(9).settled([100, 100, 100])  # no minimum: never early


def test_prompt_logprobs_of_many_texts_come_in_one_request_each_in_its_own_context():
    texts = ["alpha beta gamma", "delta epsilon", "zeta eta theta iota"]

    async def go(url):
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
            each = await prompt_logprobs_each(http, url, "mock", texts, k=2)
            joined = await prompt_logprobs(http, url, "mock", texts, k=2)
            return each, joined

    with MockServer(Script()) as srv:
        each, joined = asyncio.run(go(srv.url))
    assert [len(p) for p in each] == [2, 1, 3]  # a position per token after the first, in the texts' order
    assert joined == [p for ps in each for p in ps]
