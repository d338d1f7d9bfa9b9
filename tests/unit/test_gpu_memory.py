"""GPU memory through NVML, on a machine with an NVIDIA GPU (skipped elsewhere): the fake engine holds
device memory like vLLM would; the climb must see the peak and see it come back after the stop."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.measure.telemetry import gpu_memory_used

pytestmark = pytest.mark.skipif(gpu_memory_used() is None, reason="no NVIDIA GPU reachable through NVML")


def test_climb_reads_gpu_peak_and_checks_release(tmp_path, model_dir):
    plan = {
        "name": "gpu",
        "engine": "fake-vllm",
        "trials": 1,
        "workloads": [{"name": "short", "prompt": "hi", "max_tokens": 8}],
        "rungs": [{"name": "gpu", "model": str(model_dir), "extra_args": ["--gpu-gib", "4"]}],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["climb", str(path), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rung = json.loads((out / "results.json").read_text())["rungs"][0]
    memory = rung["memory"]
    assert memory["gpu_peak_gib"] - memory["gpu_used_before_gib"] >= 4
    assert memory["gpu_used_after_gib"] < memory["gpu_used_before_gib"] + 0.5
    assert rung["stop"]["memory_released"]
    print("GPU memory (GiB):", {k: round(v, 2) for k, v in memory.items() if v is not None})
