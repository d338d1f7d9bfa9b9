import pytest

from llm_ladder.engines.base import EngineError
from llm_ladder.engines.vllm import rung_args
from llm_ladder.engines.vllm_docker import VllmDockerEngine
from llm_ladder.plan import Rung


def test_the_container_runs_the_rungs_flags_with_the_workshops_options(model_dir, monkeypatch):
    monkeypatch.setenv("LADDER_VLLM_IMAGE", "nvcr.io/nvidia/vllm:26.01-py3")
    rung = Rung(name="fp8", model="m", quantization="fp8", env={"HF_TOKEN": "hf_secret", "VLLM_LOGGING_LEVEL": "DEBUG"})
    cmd = VllmDockerEngine(port=8123).command(rung, str(model_dir), 8123)
    assert cmd[:5] == ["docker", "run", "--rm", "--name", "ladder-fp8-8123"]
    assert "--runtime=nvidia" in cmd and cmd[cmd.index("--network") + 1] == "host"
    assert f"{model_dir.resolve()}:/models/model:ro" in cmd and any(v.endswith(":/root/.cache/vllm") for v in cmd)
    image = cmd.index("nvcr.io/nvidia/vllm:26.01-py3")
    assert cmd[image + 1 : image + 4] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[image + 4 : -4] == rung_args(rung, "/models/model")
    assert cmd[-4:] == ["--host", "127.0.0.1", "--port", "8123"]
    assert "hf_secret" not in " ".join(cmd) and cmd[cmd.index("VLLM_LOGGING_LEVEL") - 1] == "-e"


def test_a_hub_model_comes_from_the_mounted_cache():
    cmd = VllmDockerEngine().command(Rung(name="a", model="org/model"), "org/model", 9000)
    assert "--model" in cmd and cmd[cmd.index("--model") + 1] == "org/model"
    assert not any(":/models/" in c for c in cmd)


def test_preflight_names_a_missing_docker_or_daemon(tmp_path, monkeypatch):
    with pytest.raises(EngineError, match="not found: engine vllm-docker needs Docker"):
        VllmDockerEngine(docker=str(tmp_path / "nodocker")).preflight()
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(EngineError, match="Docker daemon is not reachable \\(Cannot connect"):
        VllmDockerEngine(docker=str(fake)).preflight()
