"""`engine: vllm-docker`: every rung in NVIDIA's NGC vLLM container, started as the workshop starts it
(`docker run --runtime=nvidia --network host`, caches mounted); the rest — health, stages, verification — is
the native vLLM engine's, since it is the same server behind the same port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from llm_ladder.engines.base import EngineError, Server, StopReport
from llm_ladder.engines.vllm import API_MODULE, VllmEngine, rung_args
from llm_ladder.models.store import hf_home
from llm_ladder.plan.schema import Rung

DEFAULT_IMAGE = "nvcr.io/nvidia/vllm:25.09-py3"
HOME = Path.home()


def container_model(model_path: str) -> tuple[str, list[str]]:
    """The model argument inside the container and the volumes it needs: a local model directory is mounted
    read-only under /models; a hub id is left to the mounted HF cache."""
    local = Path(model_path).expanduser()
    if local.is_dir():
        return f"/models/{local.name}", [f"{local.resolve()}:/models/{local.name}:ro"]
    return model_path, []


def container_name(rung: Rung, port: int) -> str:
    return f"ladder-{rung.name}-{port}"


class VllmDockerEngine(VllmEngine):
    name = "vllm-docker"

    def __init__(
        self, image: str | None = None, docker: str = "docker", host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        super().__init__(python="python3", host=host, port=port)
        self.image = image or os.environ.get("LADDER_VLLM_IMAGE") or DEFAULT_IMAGE
        self.docker = docker

    def preflight(self) -> None:
        super().preflight()
        if shutil.which(self.docker) is None:
            raise EngineError(f"{self.docker} not found: engine vllm-docker needs Docker (see `ladder doctor`)")
        info = subprocess.run([self.docker, "info"], capture_output=True, text=True, timeout=30, check=False)
        if info.returncode != 0:
            why = (info.stderr.strip().splitlines() or ["no answer"])[-1]
            raise EngineError(f"the Docker daemon is not reachable ({why}); `ladder doctor` says what to do")

    def command(self, rung: Rung, model_path: str, port: int) -> list[str]:
        model, volumes = container_model(model_path)
        cmd = [self.docker, "run", "--rm", "--name", container_name(rung, port), "--runtime=nvidia"]
        cmd += ["--network", "host", "--shm-size=16g", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864"]
        cmd += ["-v", f"{hf_home()}:/root/.cache/huggingface"]
        cmd += ["-v", f"{HOME / '.cache' / 'vllm'}:/root/.cache/vllm"]
        for volume in volumes:
            cmd += ["-v", volume]
        for key in ("HF_TOKEN", *rung.env):  # names only: docker copies the values from its environment
            cmd += ["-e", key]
        serve = ["python3", "-m", API_MODULE, *rung_args(rung, model), "--host", self.host, "--port", str(port)]
        return [*cmd, self.image, *serve]

    def stop(self, server: Server) -> StopReport:
        """Stopping `docker run` stops the container (signals are proxied); a forced removal makes sure."""
        report = super().stop(server)
        name = server.command[server.command.index("--name") + 1]
        subprocess.run([self.docker, "rm", "-f", name], capture_output=True, timeout=60, check=False)
        return report
