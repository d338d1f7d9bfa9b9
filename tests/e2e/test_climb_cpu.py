"""A real climb (bf16, int4, int4 + n-gram) on vLLM's CPU build, through the `ladder` command."""

import contextlib
import json
import subprocess
import sys

import psutil
import yaml

from llm_ladder.cli.plan import machine_plan
from llm_ladder.engines.vllm import RUN_MARKER
from llm_ladder.engines.vllm_cpu_fixes import EXPAND_FIX_LOG
from llm_ladder.measure.energy import open_energy_source
from llm_ladder.plan.schema import DEFAULT_WORKLOADS

from ..browser import open_report, painted_share


def quick_plan(tmp_path, name, rungs, edit, **more):
    """A plan file of `rungs` with the default workloads cut short (long: 96 tokens, its floor = its ceiling;
    `edit`: the edit workload's settings), one trial, the first 4 items of each suite: CI minutes."""
    short, long, edit_default = DEFAULT_WORKLOADS
    raw = {
        "name": name,
        "trials": 1,
        "workloads": [
            {"name": "short", "prompt": short.prompt, "max_tokens": 48},
            {"name": "long", "prompt": long.prompt, "max_tokens": 96, "min_tokens": 96},
            {"name": "edit", "prompt": edit_default.prompt, **edit},
        ],
        "suites": {"limit": 4},
        "rungs": rungs,
        **more,
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _e2e_plan(tmp_path):
    """The ladder `ladder plan auto` picks for this machine, narrowed to its baseline, int4 and int4 + n-gram, eager
    mode, and a small load sweep."""
    plan = machine_plan(None, None)
    keep = (plan.baseline.name, "int4", "int4-ngram")
    rungs = [r.model_dump(exclude_defaults=True) | {"enforce_eager": True} for r in plan.rungs if r.name in keep]
    load = {"concurrency": [1, 4], "max_requests": 12, "input_len": 32, "output_len": 16}
    edit = {"max_tokens": 96, "min_tokens": 64}
    return quick_plan(tmp_path, "smollm2-cpu-e2e", rungs, edit, load=load, selection=plan.selection.model_dump())


def _engine_processes(run_dir):
    """Live processes started by this climb (they carry its run directory in their environment)."""
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get(RUN_MARKER) == str(run_dir.resolve()):
                found.append(p.pid)
    return found


def _items(out, rung):
    return [json.loads(x) for x in (out / "suites" / f"{rung}.jsonl").read_text().splitlines()]


def test_climb_on_vllm_cpu(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "llm_ladder", "climb", str(_e2e_plan(tmp_path)), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    bf16, int4, spec = summary["rungs"]
    for rung in (bf16, int4, spec):
        assert rung["status"] == "ok", rung["error"]
        assert rung["workloads"]["long"]["completion_tokens"]["median"] == 96
        assert rung["workloads"]["short"]["decode_tps"]["median"] > 0
        assert rung["startup"]["weights_s"] is not None and rung["startup"]["total_s"] > 0
        assert rung["memory"]["peak_rss_gib"] > 0.2
        assert rung["stop"]["leftover_pids"] == [] and rung["stop"]["memory_released"]
        assert all(v.startswith("ok") for v in rung["verification"])
        assert 1 < rung["workloads"]["short"]["output_perplexity"]["median"] < 50  # text the model would write
        assert {s["suite"]: s["n"] for s in rung["suites"].values()} == {"instructions": 4, "exact": 4}
        items = _items(out, rung["name"])
        assert len(items) == 8 and all(i["response"] and i["token_ids"] and i["error"] is None for i in items)
    assert summary["selection"]["hardware"] and summary["host"]["hardware"]["cpu"]["vllm_library"].startswith("_C")
    assert 0.2 < bf16["weights_gib"] < 0.6  # the 16-bit checkpoint on disk
    assert int4["weights_gib"] is None  # online quantization: the disk size would be the bf16 one
    assert "--enforce-eager" in int4["command"] and "torchao" in int4["command"]
    assert "quantization=torchao" in (out / "logs" / "int4.log").read_text()
    # sampled speculation works: vLLM #55005 worked around, drafts accepted on the sampled edit workload, and the
    # answers are ones the model would write (their perplexity inside the budget)
    assert f"{EXPAND_FIX_LOG}: applied" in (out / "logs" / "int4-ngram.log").read_text()
    assert spec["spec"]["edit"]["accepted_tokens"] > 0, spec["spec"]
    verdicts = {v["rung"]: v for v in summary["recommendation"]["verdicts"]}
    assert not any("answers' perplexity" in r for r in verdicts["int4-ngram"]["reasons"] if "outside" in r)
    assert verdicts["int4"]["accepted"], verdicts["int4"]  # int4 group 32 lands on the Q4_1 grid
    same, drift = bf16["agreement"], int4["agreement"]
    assert same["tokens"] >= 2000 and same["perplexity_ratio"] == 1 and same["same_top"] == 1
    assert drift["tokens"] == same["tokens"] and drift["mean_kl"] > 0 and drift["same_top"] < 1
    for rung in (bf16, int4, spec):
        c1, c4 = rung["load"]["levels"]
        assert (c1["completed"], c4["completed"]) == (10, 4)  # 12 sent; warmup and cooldown = concurrency
        assert c1["failed"] == c4["failed"] == 0 and c1["total_output_tokens"] == 10 * 16  # ignore_eos: exact
        assert c1["median_ttft_ms"] > 0 and c1["p99_itl_ms"] >= c1["median_itl_ms"] > 0
    # random-token prompts give n-gram nothing to copy, so the load levels may count no drafts: the workloads do
    assert all("spec_decode_draft_tokens" not in level for level in bf16["load"]["levels"])
    base_name, int4_name = bf16["name"], int4["name"]  # the baseline rung, as plan auto names it
    passed = {
        r: {i["id"]: i["passed"] for i in _items(out, r) if i["suite"] == "exact"} for r in (base_name, int4_name)
    }
    lost = sum(passed[base_name][i] and not passed[int4_name][i] for i in passed[base_name])
    gained = sum(passed[int4_name][i] and not passed[base_name][i] for i in passed[base_name])
    paired = int4["suites"]["exact"]["vs_baseline"]
    assert (paired["lost"], paired["gained"]) == (lost, gained)
    assert spec["greedy_identity"]["reference"] == "int4" and spec["greedy_identity"]["compared"] == 8
    assert spec["greedy_identity"]["match"] == 1.0, spec["greedy_identity"]  # speculation is lossless
    md = (out / "summary.md").read_text()
    assert f"| {bf16['name']} | smollm2-135m-instruct |" in md and "| int4 |" in md and "## Task suites" in md
    assert "## Why these rungs" in md and "**Baseline:**" in md and "de-quantized" in md
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["type"] == "request" for x in lines) == 9
    assert _engine_processes(out) == []
    assert summary["host"]["memory_bandwidth"]["gbs"] > 1  # measured here: no datasheet for a VM's CPU
    (roof,) = [r for r in bf16["roofline"] if r["workload"] == "long"]
    assert roof["weight_gib"] == bf16["weights_gib"] and roof["kv_mib_per_step"] > 0 and 0 < roof["percent"] < 100
    energy, source = bf16["workloads"]["long"]["energy_j_per_token"], open_energy_source()
    if source is not None:
        source.close()
    assert "## Roofline and energy" in md and (energy is None) == (source is None)  # n/a without RAPL
    assert energy is None or energy > 0
    dom, console = open_report(out / "report.html", out / "report.png")
    assert console == [], console  # no JavaScript errors, no failed loads
    assert dom.count("<svg") >= 8 and dom.count("<tr") > 10 and "int4-ngram" in dom and "Why these rungs" in dom
    painted, colours = painted_share(out / "report.png")
    assert painted > 0.05 and colours > 50
