"""The load generator against the scripted mock server: shapes, bounds, phases, faults, statistics, `ladder bench`."""

import asyncio
import itertools
import json
import math
import statistics

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.load.arrivals import LoadShape, send_offsets, shapes_from
from llm_ladder.load.loadgen import LoadRecord, LoadRun, mark_phases, run_load
from llm_ladder.load.loadstats import knee, parse_slo, summarize_run
from llm_ladder.load.prompts import PromptError, jsonl, local_tokenizer, random_prompts
from llm_ladder.measure.client import Streamer
from llm_ladder.testing.mock_server import MockServer, Script

runner = CliRunner()


def test_poisson_offsets_are_seeded_and_end_at_n_over_rate():
    a, b = send_offsets(200, rate=10, seed=1), send_offsets(200, rate=10, seed=1)
    assert a == b and a[-1] == pytest.approx(20.0)
    gaps = [y - x for x, y in itertools.pairwise(a)]
    assert statistics.fmean(gaps) == pytest.approx(0.1, rel=0.05)
    assert statistics.pstdev(gaps) > 0.05  # exponential gaps: std ≈ mean
    constant = send_offsets(4, rate=2, burstiness=math.inf)
    assert constant == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_cli_shapes_and_slos_parse_or_say_what_is_wrong():
    assert [s.concurrency for s in shapes_from("1,4,16", None)] == [1, 4, 16]
    rate_shapes = shapes_from("8", "1,2", burstiness=0.5)
    assert [(s.rate, s.concurrency, s.burstiness) for s in rate_shapes] == [(1, 8, 0.5), (2, 8, 0.5)]
    with pytest.raises(ValueError, match="one cap"):
        shapes_from("1,2", "3")
    with pytest.raises(ValueError, match="--concurrency 'x'"):
        shapes_from("x", None)
    assert parse_slo("ttft=500, tpot=50,e2e=4000") == {"ttft": 500, "tpot": 50, "e2el": 4000}
    with pytest.raises(ValueError, match="--slo 'itl=3'"):
        parse_slo("itl=3")


def test_random_prompts_have_the_length_and_are_distinct():
    reqs = random_prompts(5, input_len=40, output_len=16, seed=3)
    assert all(r.input_len == 40 and r.max_tokens == 16 and r.ignore_eos for r in reqs)
    assert len({r.prompt for r in reqs}) == 5 and reqs == random_prompts(5, 40, 16, seed=3)


def test_a_tokenizer_json_counts_tokens_without_transformers(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"[UNK]": 0, "time": 1, "river": 2}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    count = local_tokenizer(str(tmp_path))
    assert count("time river time") == 3 and count("river unknown words") == 3
    reqs = random_prompts(3, 12, 4, count=count)
    assert all(r.input_len == 12 for r in reqs)


def test_jsonl_dataset_errors_name_the_line(tmp_path):
    path = tmp_path / "reqs.jsonl"
    path.write_text('{"prompt": "hi"}\n{"prompt": "x", "max_tokens": 0}\n')
    with pytest.raises(PromptError, match=r"reqs.jsonl:2: Input should be greater than 0"):
        jsonl(path, 16)
    path.write_text('{"prompt": "hi", "max_tokens": 4}\n')
    assert jsonl(path, 16)[0].max_tokens == 4


def _run(script, shape, n=12, **kw):
    async def go():
        with MockServer(script) as server:
            async with Streamer(read_timeout_s=30) as streamer:
                reqs = random_prompts(4, 8, 6)
                run = await run_load(streamer, server.url, "mock", reqs, shape, max_requests=n, **kw)
                return run, server.state

    return asyncio.run(go())


def test_concurrency_is_respected_and_every_request_is_recorded():
    run, state = _run(Script(ttft_ms=20, itl_ms=5), LoadShape(concurrency=3), n=12)
    assert len(run.records) == 12 and all(r.ok for r in run.records)
    assert all(r.completion_tokens == 6 and len(r.itl_s) == 5 for r in run.records)  # ignore_eos: exactly 6
    starts = sorted((r.start_s, r.start_s + r.e2e_s) for r in run.records)
    in_flight = max(sum(s <= t < e for s, e in starts) for t, _ in starts)
    assert in_flight == 3
    assert state.requests[0]["ignore_eos"] is True and state.requests[0]["temperature"] == 0


def test_rate_paces_requests_and_duration_bounds_the_run():
    run, _ = _run(Script(ttft_ms=5, itl_ms=1), LoadShape(rate=20, burstiness=math.inf), n=10)
    starts = [r.start_s for r in run.records]
    assert starts[-1] - starts[0] == pytest.approx(0.45, abs=0.05)  # 10 requests at 20/s, the first at 0.05 s
    bounded, _ = _run(Script(ttft_ms=5, itl_ms=1), LoadShape(rate=20, burstiness=math.inf), n=1000, duration_s=0.5)
    assert bounded.stopped_by == "duration" and 8 <= len(bounded.records) <= 11


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("error_rate", "http_5xx"),
        ("truncate_rate", "truncated"),
        ("malformed_rate", "malformed_sse"),
        ("reset_rate", "read"),
    ],
)
def test_server_faults_become_per_request_errors(fault, kind):
    run, _ = _run(Script(ttft_ms=2, itl_ms=1, **{fault: 1.0}), LoadShape(concurrency=2), n=4)
    assert len(run.records) == 4 and {r.error_kind for r in run.records} == {kind}


def test_a_stalled_server_is_a_timeout_not_a_hang():
    run, _ = _run(Script(ttft_ms=3000), LoadShape(concurrency=2), n=2, request_timeout_s=0.3)
    assert [r.error_kind for r in run.records] == ["timeout", "timeout"]


def _rec(i, ttft, e2e, n, ok=True, kind=None):
    return LoadRecord(
        workload="load", trial=i, index=i, start_s=float(i), ttft_s=ttft, e2e_s=e2e, completion_tokens=n,
        prompt_tokens=10, itl_s=[(e2e - ttft) / (n - 1)] * (n - 1) if ok else [], ok=ok, error_kind=kind,
    )  # fmt: skip


def test_statistics_use_vllm_bench_names_and_exclude_warmup_and_cooldown():
    records = [_rec(0, 0.1, 1.1, 11), _rec(1, 0.2, 2.2, 21), _rec(2, 0.3, 1.3, 11), _rec(3, 9, 9, 1, False, "timeout")]
    records.append(_rec(4, 5.0, 50.0, 11))
    mark_phases(records, warmup=0, cooldown=1)
    run = LoadRun(
        shape=LoadShape(concurrency=2), endpoint="chat", records=records, wall_s=10, stopped_by="max_requests"
    )
    out = summarize_run(run, parse_slo("ttft=250,tpot=150"))
    assert out["completed"] == 3 and out["failed"] == 1 and out["errors_by_kind"] == {"timeout": 1}
    assert out["excluded"] == 1 and out["duration"] == pytest.approx(12.0)  # starts 0..3, the last end 3 + 9
    assert out["median_ttft_ms"] == pytest.approx(200) and out["p99_ttft_ms"] == pytest.approx(298, abs=0.1)
    assert out["mean_tpot_ms"] == pytest.approx(100) and out["total_output_tokens"] == 43
    assert out["output_throughput"] == pytest.approx(43 / 12) and out["request_goodput"] == pytest.approx(2 / 12)
    assert {"std_itl_ms", "p90_e2el_ms", "request_throughput", "total_token_throughput"} <= set(out)


def test_knee_is_where_throughput_stops_paying():
    levels = [{"concurrency": c, "output_throughput": t} for c, t in ((1, 10), (4, 35), (16, 39), (64, 40))]
    assert knee(levels) == 16 and knee([]) is None


def test_ladder_bench_writes_json_csv_and_every_request(tmp_path):
    with MockServer(Script(ttft_ms=10, itl_ms=2, reset_rate=0.1, seed=3)) as server:
        out = tmp_path / "b"
        result = runner.invoke(
            app,
            ["bench", "--url", server.url, "--concurrency", "1,4", "--max-requests", "12", "--output-len", "8",
             "--slo", "ttft=1000", "--out", str(out)],
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "bench.json").read_text())
    assert [lv["concurrency"] for lv in bench["levels"]] == [1, 4]
    assert all(lv["completed"] + lv["failed"] + lv["excluded"] == 12 for lv in bench["levels"])
    assert sum(lv["errors_by_kind"].get("read", 0) for lv in bench["levels"]) >= 1
    lines = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    requests = [x for x in lines if x["type"] == "request"]
    assert len(requests) == 24 and {x["phase"] for x in requests} >= {"warmup", "measured", "cooldown"}
    assert [x["requests"] for x in lines if x["type"] == "level_end"] == [12, 12]
    assert (out / "bench.csv").read_text().startswith("shape,concurrency,")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "16", "--max-requests", "20"], "leaves nothing to measure at concurrency 16"),
        (["--endpoint", "nope"], "endpoint: Input should be 'chat' or 'completions'"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--dataset", "jsonl"], "the jsonl dataset needs a file"),
    ],
)
def test_ladder_bench_bad_input_is_one_line(tmp_path, args, message):
    with MockServer() as server:
        result = runner.invoke(app, ["bench", "--url", server.url, "--out", str(tmp_path / "b"), *args])
    assert result.exit_code == 2 and message in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "b").exists()


def test_sweep_reads_spec_acceptance_and_speaks_completions(tmp_path):
    from llm_ladder.load.sweep import SweepOptions, run_sweep

    opts = SweepOptions(shapes=(LoadShape(concurrency=2),), endpoint="completions", max_requests=6)
    with MockServer(Script(ttft_ms=2, itl_ms=1, spec_drafts_per_token=2)) as server:
        result = run_sweep(server.url, "mock", random_prompts(3, 8, 5), opts, tmp_path)
        bodies = list(server.state.requests)
    (level,) = result["levels"]
    assert level["completed"] == 2 and level["spec_decode_acceptance_rate"] == pytest.approx(0.5)
    assert level["spec_decode_draft_tokens"] == 6 * 5 * 2  # every request of the level, warmup included
    assert all("prompt" in b and "messages" not in b for b in bodies)


def test_sharegpt_keeps_the_pairs_vllm_bench_keeps(tmp_path):
    from llm_ladder.load.prompts import sharegpt

    def conv(q, a):
        return {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}

    data = [
        conv("too short", "a b c d e"),
        conv("w " * 10, "x " * 3),
        conv("w " * 10, "y " * 20),
        {"conversations": []},
    ]
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(data))
    (req,) = sharegpt(5, path=path)
    assert req.input_len == 10 and req.max_tokens == 20 and not req.ignore_eos
