"""Scores, paired comparisons, greedy identity, and running suites against the mock server (`ladder eval`)."""

import json

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.quality.suites import ItemResult, greedy_identity, mcnemar_p, paired, score
from llm_ladder.testing.mock_server import MockServer, Script

runner = CliRunner()


def _items(passed, suite="exact", tokens=None):
    return [
        ItemResult(suite=suite, id=f"i{n}", prompt="q", passed=p, token_ids=tokens[n] if tokens else None)
        for n, p in enumerate(passed)
    ]


def test_score_has_accuracy_and_wilson_interval():
    s = score("exact", _items([True] * 30 + [False] * 10))
    assert (s.n, s.passed, s.accuracy) == (40, 30, 0.75)
    lo, hi = s.ci95
    assert lo == pytest.approx(0.5976, abs=1e-3) and hi == pytest.approx(0.8578, abs=1e-3)
    assert s.loose_accuracy is None


def test_mcnemar_exact_p_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 0) == pytest.approx(0.0625)  # 2 × (1/2)^5
    assert mcnemar_p(6, 0) == pytest.approx(0.03125)
    assert mcnemar_p(3, 3) == 1.0


def test_paired_comparison_counts_lost_and_gained_items():
    base = _items([True, True, True, False, False])
    rung = _items([True, False, False, True, False])
    p = paired(base, rung)
    assert (p.lost, p.gained) == (2, 1) and p.drop_points == pytest.approx(20.0)
    assert p.baseline_accuracy == pytest.approx(0.6) and not p.significant


def test_greedy_identity_compares_token_ids_and_names_the_first_difference():
    ref = _items([True, True, True], tokens=[[1, 2, 3], [4, 5], [6]])
    spec = _items([True, True, True], tokens=[[1, 2, 3], [4, 9], [6]])
    ident = greedy_identity("int4", ref, spec)
    assert (ident.compared, ident.identical) == (3, 2) and ident.match == pytest.approx(2 / 3)
    assert ident.differing == ["exact/i1@1"] and ident.by == "tokens"


def test_greedy_identity_falls_back_to_text_and_skips_failed_items():
    ref = [ItemResult(suite="s", id="a", prompt="q", response="x"), ItemResult(suite="s", id="b", prompt="q")]
    rung = [
        ItemResult(suite="s", id="a", prompt="q", response="x"),
        ItemResult(suite="s", id="b", prompt="q", error="HTTP 500"),
    ]
    ident = greedy_identity("r", ref, rung)
    assert (ident.compared, ident.identical) == (1, 1) and ident.by == "text"  # said so in the summary


def _eval(url, tmp_path, *args):
    return runner.invoke(app, ["eval", "--url", url, "--out", str(tmp_path / "ev"), *args], catch_exceptions=False)


def test_ladder_eval_scores_a_running_server_and_keeps_every_item(tmp_path):
    replies = {"17 + 25": "The answer is 42.", "capital of France": "Paris", "Earth round": "My answer is yes."}
    with MockServer(Script(replies=replies, reply="no idea")) as server:
        result = _eval(server.url, tmp_path, "--limit", "22", "--concurrency", "4")
        bodies = list(server.state.requests)
    assert result.exit_code == 0, result.output
    items = [json.loads(x) for x in (tmp_path / "ev" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 44 and {i["suite"] for i in items} == {"instructions", "exact"}
    by_id = {i["id"]: i for i in items}
    assert by_id["ex-01"]["passed"] and by_id["ex-01"]["response"] == "The answer is 42."
    assert by_id["ex-21"]["passed"] and not by_id["ex-02"]["passed"]
    assert by_id["if-10"]["passed"] and by_id["ex-01"]["token_ids"]
    assert all(b["temperature"] == 0 and b["seed"] == 0 and not b.get("stream") for b in bodies)
    assert "task suites: mock" in result.output and "9.1%" in result.output  # exact: 2 of 22 right


def test_ladder_eval_errors_are_one_line(tmp_path):
    with MockServer() as server:
        result = _eval(server.url, tmp_path, "--model", "other")
        assert result.exit_code == 2 and "does not serve 'other' (it serves: mock)" in result.output
        result = _eval(server.url, tmp_path, "--suite", "nope")
        assert result.exit_code == 2 and "neither a file nor a shipped suite" in result.output
    result = _eval("http://127.0.0.1:9", tmp_path)
    assert result.exit_code == 2 and result.output.count("error:") == 1 and "ConnectError" in result.output


def test_failed_requests_become_failed_items_not_crashes(tmp_path):
    with MockServer(Script(fail_status=500)) as server:
        result = _eval(server.url, tmp_path, "--limit", "3", "--suite", "exact")
    assert result.exit_code == 0
    items = [json.loads(x) for x in (tmp_path / "ev" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 3 and all(i["error"].startswith("HTTP 500") and not i["passed"] for i in items)


def test_api_key_is_sent_and_never_written(tmp_path):
    with MockServer(Script(api_key="sk-s3cret", reply="42")) as server:
        denied = _eval(server.url, tmp_path, "--limit", "1")
        assert denied.exit_code == 2 and "401" in denied.output
        result = _eval(server.url, tmp_path, "--limit", "1", "--suite", "exact", "--api-key", "sk-s3cret")
    assert result.exit_code == 0 and "sk-s3cret" not in result.output
    items = (tmp_path / "ev" / "items.jsonl").read_text()
    assert '"passed":true' in items and "sk-s3cret" not in items


def test_every_suite_shares_one_pool_of_requests_in_flight_and_keeps_its_own_order():
    import asyncio

    import httpx

    from llm_ladder.plan.schema import SuitesSpec
    from llm_ladder.quality.evaluation import load_suites, run_suites

    spec = SuitesSpec(limit=3, concurrency=6)  # 3 items per suite: one pool holds all 6 at once
    suites = load_suites(spec)

    async def go(url):
        async with httpx.AsyncClient() as http:
            return await run_suites(http, url, "mock", suites, spec, lambda item: None)

    with MockServer(Script(ttft_ms=300)) as server:
        found = asyncio.run(go(server.url))
        peak = server.state.peak_in_flight
    assert {name: [i.id for i in items] for name, items in found.items()} == {
        s.name: [i.id for i in s.items] for s in suites
    }
    assert peak == 6  # suite after suite, 3 would be the most
