"""A climb with `engine: vllm-docker` in NVIDIA's NGC container, where a Docker engine with the NVIDIA runtime
exists (skipped elsewhere, as on the CPU CI machines). The model must be in the local Hugging Face cache:
LADDER_E2E_DOCKER_MODEL (default Qwen/Qwen3-0.6B)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml


def _docker_with_nvidia() -> bool:
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info", "--format", "{{.Runtimes}}"], capture_output=True, text=True, check=False)
    return info.returncode == 0 and "nvidia" in info.stdout


@pytest.mark.skipif(not _docker_with_nvidia(), reason="no Docker daemon with the NVIDIA runtime here")
def test_climb_in_the_ngc_container(tmp_path):
    model = os.environ.get("LADDER_E2E_DOCKER_MODEL", "Qwen/Qwen3-0.6B")
    plan = {
        "name": "docker-e2e",
        "engine": "vllm-docker",
        "trials": 1,
        "suites": {"enabled": False},
        "agreement": {"enabled": False},
        "workloads": [{"name": "short", "prompt": "Say hello.", "max_tokens": 32}],
        "rungs": [{"name": "bf16", "model": model, "dtype": "bfloat16", "max_model_len": 2048, "enforce_eager": True}],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "llm_ladder", "climb", str(path), "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (rung,) = json.loads((out / "results.json").read_text())["rungs"]
    assert rung["status"] == "ok" and rung["command"][:2] == ["docker", "run"]
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    assert "ladder-bf16-" not in names  # the container is gone
