"""A real climb on llama.cpp's llama-server (built by `ladder engines install llama.cpp`): F16 → Q8_0 → Q4_K_M →
Q4_K_M + n-gram, GGUFs made by the store, agreement by llama-perplexity, drafts counted in /metrics."""

import json
import subprocess
import sys

from llm_ladder.plan.loading import load_plan

from .test_climb_cpu import _engine_processes, quick_plan

NEEDS_VLLM = False


def _plan(tmp_path):
    """The shipped engines plan without its vLLM rung (the vLLM e2e covers that engine), cut short; the edit
    workload greedy, so the n-gram rung drafts for sure."""
    rungs = [r.model_dump(exclude_defaults=True) for r in load_plan("smollm2-cpu-engines").rungs]
    llama = [r for r in rungs if r.get("engine") == "llama.cpp" and not r["args"].get("imatrix")]  # unit-tested
    return quick_plan(tmp_path, "llamacpp-e2e", llama, {"max_tokens": 128, "temperature": 0}, engine="llama.cpp")


def test_climb_on_llama_server(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "llm_ladder", "climb", str(_plan(tmp_path)), "--out", str(out)],
                          capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    f16, q8, q4, spec = summary["rungs"]
    for rung in (f16, q8, q4, spec):
        assert rung["status"] == "ok", rung["error"]
        assert rung["engine"] == "llama.cpp" and rung["command"][0].endswith("llama-server")
        assert rung["workloads"]["long"]["completion_tokens"]["median"] == 96  # ignore_eos stands in for min_tokens
        assert all(v.startswith("ok") for v in rung["verification"]), rung["verification"]
        assert rung["stop"]["leftover_pids"] == []
        assert {s["suite"]: s["n"] for s in rung["suites"].values()} == {"instructions": 4, "exact": 4}
    assert f16["agreement"]["mean_kl"] < 1e-3 and f16["agreement"]["tokens"] >= 1000  # F16 against itself
    assert 0 < q8["agreement"]["mean_kl"] < q4["agreement"]["mean_kl"] < 0.5  # fewer bits, further away
    assert "llama-perplexity" in q4["agreement"]["reference"]
    assert spec["spec"]["edit"]["draft_tokens"] > 0 and spec["spec"]["edit"]["acceptance_rate"] > 0
    assert spec["greedy_identity"]["reference"] == "llamacpp-q4_k_m"
    assert summary["recommendation"]["rung"] in {
        "llamacpp-f16",
        "llamacpp-q8_0",
        "llamacpp-q4_k_m",
        "llamacpp-q4_k_m-ngram",
    }
    assert _engine_processes(out) == []
