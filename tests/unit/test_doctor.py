import json
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.vllm import API_MODULE
from llm_ladder.models.store import ModelStore
from llm_ladder.ops import doctor


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    return tmp_path / "hub"


def test_models_are_found_or_the_fix_is_named(hub, tmp_path, monkeypatch, model_dir):
    store = ModelStore(tmp_path / "store")
    check = lambda m: doctor._model(m, store)  # noqa: E731
    assert check("smollm2-135m-instruct").status == "ok"  # ladder makes it
    assert check(str(model_dir)).status == "ok"
    gated = check("meta-llama/Llama-3.1-8B-Instruct")
    assert gated.status == "fail" and "HF_TOKEN" in gated.message
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert check("meta-llama/Llama-3.1-8B-Instruct").status == "warn"  # vLLM will download it
    (hub / "models--Qwen--Qwen3-0.6B").mkdir(parents=True)
    assert check("Qwen/Qwen3-0.6B").status == "ok"
    assert check("no such thing!").status == "fail"


def test_docker_matters_only_when_the_plan_runs_in_it(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert doctor.docker(needed=False)[0].status == "skip"
    assert doctor.docker(needed=True)[0].status == "fail"
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(doctor, "_run", lambda *cmd: subprocess.CompletedProcess(cmd, 1, "", "Cannot connect"))
    down = doctor.docker(needed=False)[0]
    assert down.status == "warn" and "systemctl start docker" in down.message
    monkeypatch.setattr(
        doctor, "_run", lambda *cmd: subprocess.CompletedProcess(cmd, 0, "runc map[nvidia:{} runc:{}]", "")
    )
    up, runtime = doctor.docker(needed=True)
    assert up.status == "ok" and runtime.status == "warn" and "nvidia-ctk runtime configure" in runtime.message


def test_leftover_engines_are_listed_with_the_command_to_stop_them():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", API_MODULE])
    try:
        time.sleep(0.3)
        check = doctor.leftovers()
        assert check.status == "warn" and str(proc.pid) in check.message and "kill" in check.message
    finally:
        proc.kill()
        proc.wait()


def test_doctor_json_and_exit_code(hub, tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setattr(doctor, "jetson_model", lambda: None)  # not a Jetson: host memory is checked as such
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump({"name": "p", "rungs": [{"name": "a", "model": "meta-llama/Llama-3.1-8B-Instruct"}]})
    )
    result = CliRunner().invoke(app, ["doctor", "--plan", str(plan), "--json"])
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.exit_code == 1 and checks["model meta-llama/Llama-3.1-8B-Instruct"]["status"] == "fail"
    have_vllm = importlib.util.find_spec("vllm") is not None  # a warning exactly when no vLLM is installed
    assert checks["versions"]["status"] == ("ok" if have_vllm else "warn") and "Python" in checks["versions"]["message"]
    assert {"host memory", "leftover engines"} <= set(checks) and "unified memory" not in checks


def test_unified_memory_on_jetson_is_held_against_the_plan(monkeypatch):
    from llm_ladder.plan.schema import Plan, Rung

    monkeypatch.setattr(doctor, "jetson_model", lambda: "NVIDIA Jetson AGX Thor Developer Kit")
    mem = type("Mem", (), {"total": 128 * 2**30, "available": 60 * 2**30})
    monkeypatch.setattr(doctor.psutil, "virtual_memory", lambda: mem)
    plan = Plan(name="p", rungs=(Rung(name="a", model="m", gpu_memory_utilization=0.8),))
    check = doctor.host_memory(plan)
    assert check.status == "warn" and "needs 102.4" in check.message and "drop_caches" in check.message
    assert (
        doctor.host_memory(Plan(name="p", rungs=(Rung(name="a", model="m", gpu_memory_utilization=0.3),))).status
        == "ok"
    )
