"""A real climb on llama.cpp's llama-server (built by `ladder engines install llama.cpp`): F16 → Q8_0 → Q4_K_M →
Q4_K_M + n-gram, GGUFs made by the store, agreement by llama-perplexity, drafts counted in /metrics."""

import json
import subprocess
import sys

import yaml

from llm_ladder.plan import load_plan

from .test_climb_cpu import _engine_processes

NEEDS_VLLM = False


def _plan(tmp_path):
    """The shipped engines plan without its vLLM rung (the vLLM e2e covers that engine), short outputs, a few
    suite items: minutes in CI."""
    shipped = load_plan("smollm2-cpu-engines")
    short, long, edit = shipped.workloads
    raw = {
        "name": "llamacpp-e2e",
        "trials": 1,
        "workloads": [
            {"name": "short", "prompt": short.prompt, "max_tokens": 48},
            {"name": "long", "prompt": long.prompt, "max_tokens": 96, "min_tokens": 96},
            {"name": "edit", "prompt": edit.prompt, "max_tokens": 128, "temperature": 0},
        ],
        "suites": {"limit": 4},
        "engine": "llama.cpp",
        "rungs": [r.model_dump(exclude_defaults=True) for r in shipped.rungs if r.name.startswith("llamacpp-")],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


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
