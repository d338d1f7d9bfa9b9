"""`ladder climb` end to end on the fake engine: files, failures, resume, bad input."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.outputs.results import RunDir

runner = CliRunner()
CLI_WITH_FAKE_ENGINE = "import tests.conftest; from llm_ladder.cli.main import main; main()"


def interruptible() -> None:
    """preexec_fn for a child the test will Ctrl-C: SIGINT handled and unblocked, whatever state the test process
    inherited (in a full fresh-clone run the two Ctrl-C tests once saw their SIGINT have no effect)."""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _plan(tmp_path, model_dir, rungs=None, **over):
    plan = {
        "name": "fake",
        "engine": "fake-vllm",
        "trials": 2,
        "workloads": [
            {"name": "short", "prompt": "hi", "max_tokens": 16},
            {"name": "long", "prompt": "more", "max_tokens": 32},
        ],
        "rungs": rungs
        or [
            {"name": "base", "model": str(model_dir)},
            {
                "name": "spec",
                "model": str(model_dir),
                "speculative": {"method": "ngram"},
                "extra_args": ["--spec-drafts", "2"],
            },
        ],
        **over,
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _climb(*args):
    return runner.invoke(app, ["climb", *map(str, args)], catch_exceptions=False)


def test_climb_writes_results_summary_and_logs(tmp_path, model_dir):
    out = tmp_path / "run"
    result = _climb(_plan(tmp_path, model_dir), "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    base, spec = summary["rungs"]
    assert base["status"] == "ok" and summary["baseline"] == "base"
    assert base["workloads"]["short"]["requests"] == 2
    assert base["workloads"]["long"]["completion_tokens"]["median"] == 32
    assert base["startup"]["weights_s"] == 0.25 and base["startup"]["total_s"] > 0
    assert base["memory"]["peak_rss_gib"] > 0 and base["stop"]["leftover_pids"] == []
    assert base["weights_gib"] == pytest.approx(0.13)
    assert base["roofline"] == [] and "not a decoder config" in base["not_measured"]["roofline"]  # config.json: {}
    phases = base["phases"]
    assert list(phases)[:4] == ["startup", "warmup", "agreement", "workload short"]
    assert {"workload long", "answer scoring", "suites", "stop"} <= set(phases)
    assert phases["startup"] >= base["startup"]["total_s"] - 0.05 and phases["workload long"] > 0
    assert {"prepare", "baseline pass"} <= set(summary["phases"])
    assert "## Where the time went" in (out / "summary.md").read_text()
    assert spec["spec"]["long"]["acceptance_rate"] == pytest.approx(0.5)
    assert spec["verification"][0] == "ok: engine log matches the config"
    assert any("drafted" in v for v in spec["verification"])
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines].count("request") == 8
    md = (out / "summary.md").read_text()
    assert "| base |" in md and "tok/s long" in md and "50% (len 2.00)" in md
    assert "## Startup stages" in md and "| base | 0.2 | 1.5 |" in md
    assert (out / "logs" / "base.log").exists() and (out / "logs" / "spec.log").exists()


def test_rung_whose_log_contradicts_its_config_fails_verification(tmp_path, model_dir):
    rungs = [{"name": "base", "model": str(model_dir), "expect_log": ["never printed"]}]
    out = tmp_path / "run"
    assert _climb(_plan(tmp_path, model_dir, rungs, trials=1), "--out", out).exit_code == 1
    (base,) = json.loads((out / "results.json").read_text())["rungs"]
    assert base["status"] == "failed" and base["verification"] == ["FAIL: log lacks /never printed/"]


def _suite_plan(tmp_path, model_dir, *mock_args):
    rungs = [
        {"name": "base", "model": str(model_dir), "extra_args": ["--spec-drafts", "2", *mock_args]},
        {
            "name": "spec",
            "model": str(model_dir),
            "speculative": {"method": "ngram"},
            "extra_args": ["--spec-drafts", "2", *mock_args],
        },
    ]
    return _plan(tmp_path, model_dir, rungs, trials=1, suites={"limit": 4})


def test_suites_run_on_every_rung_with_items_kept_and_greedy_identity(tmp_path, model_dir):
    out = tmp_path / "run"
    result = _climb(_suite_plan(tmp_path, model_dir), "--out", out)
    assert result.exit_code == 0, result.output
    base, spec = json.loads((out / "results.json").read_text())["rungs"]
    assert base["suites"]["exact"]["n"] == 4 and set(base["suites"]) == {"instructions", "exact"}
    assert base["suites"]["exact"]["vs_baseline"] is None
    assert spec["suites"]["exact"]["vs_baseline"]["drop_points"] == 0
    assert spec["greedy_identity"] == {
        "reference": "base",
        "compared": 8,
        "identical": 8,
        "differing": [],
        "by": "tokens",
        "match": 1.0,
    }
    items = [json.loads(x) for x in (out / "suites" / "spec.jsonl").read_text().splitlines()]
    assert len(items) == 8 and all(i["prompt"] and i["response"] and i["token_ids"] for i in items)
    md = (out / "summary.md").read_text()
    assert "## Task suites" in md and "8/8 greedy answers identical token for token (100.0%)" in md


def test_lossy_speculation_is_flagged_and_rejected(tmp_path, model_dir):
    out = tmp_path / "run"
    result = _climb(_suite_plan(tmp_path, model_dir, "--spec-diverges"), "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    spec = summary["rungs"][1]
    assert spec["greedy_identity"]["match"] == 0 and spec["greedy_identity"]["differing"][0] == "exact/ex-01@0"
    verdict = summary["recommendation"]["verdicts"][1]
    assert not verdict["accepted"] and "greedy answers identical to base's 0.0% (0/8)" in verdict["reasons"][0]
    assert "⚠ below 100%" in (out / "summary.md").read_text()


def test_failed_rung_is_recorded_and_the_climb_goes_on(tmp_path, model_dir):
    rungs = [
        {"name": "base", "model": str(model_dir)},
        {"name": "broken", "model": str(model_dir), "extra_args": ["--exit-code", "7"]},
        {"name": "after", "model": str(model_dir)},
    ]
    out = tmp_path / "run"
    result = _climb(_plan(tmp_path, model_dir, rungs), "--out", out, "--trials", "1")
    assert result.exit_code == 1 and "1 rung(s) failed: broken" in result.output
    rungs = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rungs"]}
    assert rungs["broken"]["status"] == "failed" and "exited with code 7" in rungs["broken"]["error"]
    assert "scripted startup failure" in rungs["broken"]["log_tail"]
    assert rungs["after"]["status"] == "ok"


def test_resume_skips_completed_rungs(tmp_path, model_dir):
    rungs = [{"name": "base", "model": str(model_dir)}, {"name": "two", "model": str(model_dir)}]
    plan = _plan(tmp_path, model_dir, rungs, trials=1)
    out = tmp_path / "run"
    assert _climb(plan, "--out", out, "--rung", "base").exit_code == 0
    result = _climb(plan, "--resume", out)
    assert result.exit_code == 0, result.output
    assert "base: done in an earlier run, skipped" in result.output
    names = [r["name"] for r in json.loads((out / "results.json").read_text())["rungs"]]
    assert names == ["base", "two"]
    starts = [e for e in RunDir(out).events() if e["type"] == "rung"]
    assert [e["name"] for e in starts] == ["base", "two"]


@pytest.mark.parametrize(
    ("rungs", "message"),
    [
        ([{"name": "a", "model": "/no/such/dir"}], "is not a store name, a local directory, a .gguf file or a hub id"),
        ([{"name": "a", "model": "x", "bogus": 1}], "rungs.0.bogus: unknown key"),
    ],
)
def test_bad_input_is_one_error_and_nothing_starts(tmp_path, model_dir, rungs, message):
    out = tmp_path / "run"
    result = _climb(_plan(tmp_path, model_dir, rungs), "--out", out)
    assert result.exit_code == 2
    assert message in result.output and result.output.count("error:") == 1
    assert not out.exists()


def test_unknown_engine_is_rejected_before_starting(tmp_path, model_dir):
    result = _climb(_plan(tmp_path, model_dir, engine="nope"), "--out", tmp_path / "run")
    assert result.exit_code == 2 and "unknown engine 'nope'" in result.output


def test_occupied_port_is_rejected_before_starting(tmp_path, model_dir):
    from llm_ladder.testing.mock_server import MockServer

    with MockServer() as busy:
        port = busy.url.rsplit(":", 1)[1]
        result = _climb(_plan(tmp_path, model_dir), "--out", tmp_path / "run", "--port", port)
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in result.output
    assert not (tmp_path / "run").exists()


def test_fixed_port_is_used(tmp_path, model_dir):
    from llm_ladder.engines.process import free_port

    port = free_port()
    rungs = [{"name": "base", "model": str(model_dir)}]
    result = _climb(_plan(tmp_path, model_dir, rungs, trials=1), "--out", tmp_path / "run", "--port", port)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["rungs"][0]["command"][-1] == str(port)


def test_ctrl_c_stops_servers_and_keeps_results(tmp_path, model_dir):
    import signal
    import subprocess
    import sys
    import time

    import psutil

    rungs = [{"name": "slow", "model": str(model_dir), "extra_args": ["--itl-ms", "200", "--tokens", "200"]}]
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI_WITH_FAKE_ENGINE,
            "climb",
            str(_plan(tmp_path, model_dir, rungs)),
            "--out",
            str(out),
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interruptible,
    )
    log = out / "logs" / "slow.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "startup complete" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.2)
    time.sleep(2)  # the server is up and a request is streaming
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children and children[0].environ()["LADDER_RUN_DIR"] == str(out.resolve())  # marks this run's engine
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    events = RunDir(out).events()
    assert events[-1]["type"] == "rung" and events[-1]["error"] == "interrupted"
    assert json.loads((out / "results.json").read_text())["rungs"][0]["name"] == "slow"


def test_engine_crash_mid_rung_is_recorded_with_its_log_tail(tmp_path, model_dir):
    rungs = [
        {"name": "crashy", "model": str(model_dir), "extra_args": ["--die-after", "2"]},
        {"name": "after", "model": str(model_dir)},
    ]
    out = tmp_path / "run"
    result = _climb(_plan(tmp_path, model_dir, rungs), "--out", out)
    assert result.exit_code == 1
    crashy, after = json.loads((out / "results.json").read_text())["rungs"]
    assert crashy["status"] == "failed" and "exited with code 9" in crashy["error"]
    assert "scripted crash" in crashy["log_tail"]
    assert crashy["stop"]["leftover_pids"] == []
    assert after["status"] == "ok"


def test_secrets_in_rung_env_never_reach_results(tmp_path, model_dir):
    rungs = [{"name": "base", "model": str(model_dir), "env": {"HF_TOKEN": "hf_s3cret", "VLLM_CPU_KVCACHE_SPACE": "2"}}]
    out = tmp_path / "run"
    assert _climb(_plan(tmp_path, model_dir, rungs, trials=1), "--out", out).exit_code == 0
    for name in ("results.json", "results.jsonl", "summary.md", "logs/base.log"):
        assert "hf_s3cret" not in (out / name).read_text()
    config = json.loads((out / "results.json").read_text())["rungs"][0]["config"]
    assert config["env"] == {"HF_TOKEN": "***", "VLLM_CPU_KVCACHE_SPACE": "2"}


def test_resume_reruns_a_rung_whose_config_changed(tmp_path, model_dir):
    rungs = [{"name": "base", "model": str(model_dir)}]
    out = tmp_path / "run"
    assert _climb(_plan(tmp_path, model_dir, rungs, trials=1), "--out", out).exit_code == 0
    changed = [{"name": "base", "model": str(model_dir), "max_model_len": 512}]
    result = _climb(_plan(tmp_path, model_dir, changed, trials=1), "--resume", out)
    assert result.exit_code == 0 and "skipped" not in result.output
    assert [e["type"] for e in RunDir(out).events()].count("rung") == 2


def test_resume_needs_an_earlier_run(tmp_path, model_dir):
    result = _climb(_plan(tmp_path, model_dir), "--resume", tmp_path / "nothing")
    assert result.exit_code == 2 and "no results.jsonl there to resume from" in result.output
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "results.jsonl").write_text('{"type": "rung"}\n{oops\n{"type": "request"}\n')
    result = _climb(_plan(tmp_path, model_dir), "--resume", damaged)
    assert result.exit_code == 2 and "results.jsonl: line 2 is not JSON" in " ".join(result.output.split())


def _drift_rungs(model_dir):
    """A baseline, a rung identical to it, and one whose prompt logprobs drift far from it."""
    return [
        {"name": "base", "model": str(model_dir)},
        {"name": "same", "model": str(model_dir)},
        {"name": "drift", "model": str(model_dir), "extra_args": ["--logprob-shift", "2"]},
    ]


def test_agreement_with_the_baseline_from_prompt_logprobs(tmp_path, model_dir):
    rungs = _drift_rungs(model_dir)
    out = tmp_path / "run"
    assert _climb(_plan(tmp_path, model_dir, rungs, trials=1), "--out", out).exit_code == 0
    by_name = {r["name"]: r["agreement"] for r in json.loads((out / "results.json").read_text())["rungs"]}
    assert by_name["base"]["mean_kl"] == pytest.approx(0, abs=1e-12) and by_name["base"]["same_top"] == 1
    assert by_name["same"]["perplexity_ratio"] == pytest.approx(1.0)
    drift = by_name["drift"]
    assert drift["tokens"] > 1000 and drift["same_top"] == 0 and drift["mean_kl"] > 0.1
    assert drift["perplexity_ratio"] > 2
    lo, hi = drift["same_top_ci95"]
    assert lo == pytest.approx(0, abs=1e-12) and 0 < hi < 0.01
    assert (out / "logprobs" / "drift.json").exists()
    md = (out / "summary.md").read_text()
    assert "## Agreement with the baseline" in md and "| drift |" in md
    rec = json.loads((out / "results.json").read_text())["recommendation"]
    assert rec["rung"] in ("base", "same") and rec["objective"] == "decode_tps_long"
    drift_verdict = next(v for v in rec["verdicts"] if v["rung"] == "drift")
    assert not drift_verdict["accepted"] and "perplexity ratio" in drift_verdict["reasons"][0]
    assert any("`long` answers' perplexity 7.4× the baseline's" in r for r in drift_verdict["reasons"])
    assert "## Recommendation" in md and "**drift** rejected" in md


def test_quick_measures_the_objective_only_and_skips_quality_work_where_agreement_already_fails(tmp_path, model_dir):
    rungs = _drift_rungs(model_dir)
    out = tmp_path / "run"
    plan = _plan(tmp_path, model_dir, rungs, trials=1, suites={"limit": 2})
    assert _climb(plan, "--out", out, "--quick").exit_code == 0
    summary = json.loads((out / "results.json").read_text())
    base, same, drift = summary["rungs"]
    assert all(set(r["workloads"]) == {"long"} for r in (base, same, drift))  # the objective's workload only
    assert same["suites"]["exact"]["n"] == 2 and same["skipped"] == {} and "answer scoring" in same["phases"]
    assert drift["suites"] == {} and set(drift["skipped"]) == {"answers' perplexity", "task suites"}
    assert drift["skipped"]["task suites"].startswith("skipped (--quick): perplexity ratio")
    assert "suites" not in drift["phases"] and "answer scoring" not in drift["phases"]
    assert not (out / "suites" / "drift.jsonl").exists()
    assert summary["recommendation"]["rung"] in ("base", "same")
    assert "workloads short not measured" in summary["quick"][0]
    md = (out / "summary.md").read_text()
    assert "## Skipped by --quick" in md and "| drift | answers' perplexity, task suites |" in md


def test_the_plans_load_sweep_runs_on_every_rung(tmp_path, model_dir):
    rungs = [{"name": "base", "model": str(model_dir)}]
    load = {"concurrency": [1, 2], "max_requests": 6, "input_len": 8, "output_len": 4, "slo": {"ttft": 5000}}
    out = tmp_path / "run"
    plan = _plan(tmp_path, model_dir, rungs, trials=1, suites={"enabled": False}, load=load)
    result = _climb(plan, "--out", out)
    assert result.exit_code == 0, result.output
    (base,) = json.loads((out / "results.json").read_text())["rungs"]
    levels = base["load"]["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 2] and all(lv["failed"] == 0 for lv in levels)
    assert levels[1]["completed"] == 2 and levels[1]["request_goodput"] > 0  # 6 sent, 2 warmup, 2 cooldown
    assert len((out / "load" / "base" / "requests.jsonl").read_text().splitlines()) == 12 + 2  # + level ends
    assert "## Load" in (out / "summary.md").read_text()


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ({"rate": [1], "concurrency": [1, 2]}, "load: with `rate`, `concurrency` is one cap"),
        ({"concurrency": [8], "max_requests": 10}, "load: max_requests 10 leaves nothing to measure at concurrency 8"),
    ],
)
def test_bad_load_sections_are_one_error(tmp_path, model_dir, load, message):
    result = _climb(_plan(tmp_path, model_dir, load=load), "--out", tmp_path / "run")
    assert result.exit_code == 2 and message in result.output and result.output.count("error:") == 1


def test_a_decoder_config_gives_a_roofline_with_the_kv_type_the_engine_logged(tmp_path, model_dir):
    config = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576}
    (model_dir / "config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    rungs = [{"name": "base", "model": str(model_dir), "dtype": "float32"},
             {"name": "fp8kv", "model": str(model_dir), "kv_cache_dtype": "fp8"}]  # fmt: skip
    assert _climb(_plan(tmp_path, model_dir, rungs), "--out", out).exit_code == 0
    for rung, kv_bytes in zip(json.loads((out / "results.json").read_text())["rungs"], (4, 1), strict=True):
        long = next(r for r in rung["roofline"] if r["workload"] == "long")
        stats = rung["workloads"]["long"]
        context = stats["prompt_tokens"] + stats["completion_tokens"]["median"] / 2
        assert long["kv_mib_per_step"] == pytest.approx(2 * 30 * 3 * 64 * kv_bytes * context / 2**20)  # from the log
        assert "roofline" not in rung["not_measured"]
