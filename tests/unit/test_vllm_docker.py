import pytest

from llm_ladder.engines.base import EngineError
from llm_ladder.engines.vllm import rung_args
from llm_ladder.engines.vllm_docker import VllmDockerEngine
from llm_ladder.plan.schema import Rung


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


def test_the_checkpoints_quantization_is_checked_on_the_host_not_inside_the_container(model_dir, tmp_path):
    """The command names /models/model (the container's path, absent here); the check reads the host's copy."""
    from llm_ladder.engines.base import Server

    (model_dir / "config.json").write_text('{"quantization_config": {"quant_method": "compressed-tensors"}}')
    rung = Rung(name="w8a8", model=str(model_dir))
    engine = VllmDockerEngine(port=8123)
    log = tmp_path / "w8a8.log"
    log.write_text("Initializing a V1 LLM engine with config: quantization=None, kv_cache_dtype=auto")
    server = Server("http://127.0.0.1:8123", "w8a8", engine.command(rung, str(model_dir), 8123), log, None)
    assert engine.verify(rung, server) == [r"log lacks /quantization=compressed\-tensors\b/"]
    log.write_text("... quantization=compressed-tensors, kv_cache_dtype=auto, dtype=torch.bfloat16")
    assert engine.verify(rung, server) == [] and engine.kv_cache_bytes(rung, server) == 2
