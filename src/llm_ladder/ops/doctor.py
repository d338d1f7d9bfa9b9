"""`ladder doctor`: the workshop's troubleshooting section as checks, each with what to do about it.

A check is `ok`, `warn` (works, but look), `fail` (a climb would fail) or `skip` (does not apply here: no GPU,
no Docker). Nothing here changes the machine; where the fix needs root the message gives the command.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel

from llm_ladder.engines.vllm import API_MODULE
from llm_ladder.measure import nvml
from llm_ladder.measure.roofline import jetson_model
from llm_ladder.models.store import HUB_ID, ModelStore, hf_home, hub_cache
from llm_ladder.plan.hardware import package_versions
from llm_ladder.plan.schema import Plan

Status = Literal["ok", "warn", "fail", "skip"]
GATED_ORGS = ("meta-llama/", "google/gemma")
"""Hub repositories that need an accepted licence and a token (the workshop's Llama among them)."""


class Check(BaseModel):
    name: str
    status: Status
    message: str


def _run(*cmd: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def versions() -> Check:
    found = [f"Python {platform.python_version()}"] + [f"{d} {v}" for d, v in package_versions().items()]
    engine = any(x.startswith("vllm") for x in found[1:])
    hint = "" if engine else "; no vLLM here: `bash scripts/install.sh` (CPU) or `pip install '.[gpu]'`"
    return Check(name="versions", status="ok" if engine else "warn", message=", ".join(found) + hint)


def docker(needed: bool) -> list[Check]:
    """`needed`: the plan runs its engine in a container; otherwise Docker only matters for `ladder deploy`."""
    missing: Status = "fail" if needed else "warn"
    if shutil.which("docker") is None:
        return [Check(name="docker", status=missing if needed else "skip", message="not installed")]
    info = _run("docker", "info", "--format", "{{.DefaultRuntime}} {{.Runtimes}}")
    if info is None or info.returncode != 0:
        why = (info.stderr.strip().splitlines() or ["no answer"])[-1] if info else "no answer"
        fix = "start it: `sudo systemctl start docker`; or add yourself to the docker group"
        return [Check(name="docker daemon", status=missing, message=f"{why}; {fix}")]
    default, _, runtimes = info.stdout.strip().partition(" ")
    checks = [Check(name="docker daemon", status="ok", message=f"up, default runtime {default}")]
    if default != "nvidia":
        fix = (
            "GPU containers need `--gpus all` or the nvidia runtime as default: `sudo nvidia-ctk runtime configure "
            "--runtime=docker --set-as-default && sudo systemctl restart docker`"
        )
        status: Status = "warn" if "nvidia" in runtimes else "skip"
        checks.append(Check(name="nvidia runtime", status=status, message=fix))
    return checks


def gpus(plan: Plan | None) -> list[Check]:
    try:
        with nvml.session() as session:
            checks = [Check(name="NVML", status="ok", message=f"driver {session.driver()}")]
            return checks + [_gpu_memory(session, i, utilization(plan)) for i in range(len(session.handles))]
    except nvml.Unavailable as err:
        status: Status = "fail" if nvml.gpu_host() else "skip"  # a driver without NVML: memory goes unmeasured
        return [Check(name="NVML", status=status, message=f"no NVIDIA GPU reachable: {err}")]


def _gpu_memory(session: nvml.Session, index: int, utilization: float) -> Check:
    mem = session.memory(index)
    need, free = utilization * mem.total / 2**30, mem.free / 2**30
    name = f"GPU {index} memory"
    message = f"{free:.1f} GiB free of {mem.total / 2**30:.1f}; gpu_memory_utilization {utilization:g} needs {need:.1f}"
    if free >= need:
        return Check(name=name, status="ok", message=message)
    held = ", ".join(map(str, session.processes(index))) or "no process listed"
    return Check(
        name=name, status="fail", message=f"{message}: held by {held}; stop them or lower gpu_memory_utilization"
    )


def utilization(plan: Plan | None) -> float:
    """The largest share of GPU memory a rung of the plan asks vLLM for (vLLM's default 0.9)."""
    return max((r.args.get("gpu_memory_utilization") or 0.9 for r in plan.rungs), default=0.9) if plan else 0.9


def host_memory(plan: Plan | None = None) -> Check:
    mem = psutil.virtual_memory()
    message = f"{mem.available / 2**30:.1f} GiB available of {mem.total / 2**30:.1f}"
    if jetson_model():  # unified memory: vLLM's share is of the RAM the page cache also fills
        need = utilization(plan) * mem.total
        drop = "free the page cache: `sudo sync; echo 3 | sudo tee /proc/sys/vm/drop_caches`"
        if mem.available < need:
            message += f"; gpu_memory_utilization {utilization(plan):g} needs {need / 2**30:.1f}: {drop}"
            return Check(name="unified memory", status="warn", message=message)
        return Check(name="unified memory", status="ok", message=f"{message}; if vLLM reports too little: {drop}")
    return Check(name="host memory", status="ok" if mem.available > 4 * 2**30 else "warn", message=message)


def leftovers() -> Check:
    """Engine processes still running (a crashed climb, a forgotten `vllm serve`)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if API_MODULE in cmd or "vllm serve" in cmd or "VLLM::EngineCore" in cmd:
            found.append(f"{proc.info['pid']}")
    if not found:
        return Check(name="leftover engines", status="ok", message="no vLLM process running")
    return Check(
        name="leftover engines",
        status="warn",
        message=f"vLLM processes running: {', '.join(found)}; they hold memory and ports: `kill {' '.join(found)}`",
    )


def hf_token() -> str | None:
    if token := os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return token
    path = hf_home() / "token"
    return path.read_text().strip() if path.is_file() else None


def models(plan: Plan, store: ModelStore) -> list[Check]:
    checks = []
    for model in dict.fromkeys(r.model for r in plan.rungs):
        checks.append(_model(model, store))
    return checks


def _model(model: str, store: ModelStore) -> Check:
    name = f"model {model}"
    if store.has(model):
        return Check(name=name, status="ok", message=f"in the model store ({store.path(model)})")
    if store.can_make(model):
        return Check(name=name, status="ok", message="ladder makes it on first use (`ladder models pull`)")
    if Path(model).expanduser().is_dir():
        return Check(name=name, status="ok", message="local directory")
    if not HUB_ID.match(model):
        return Check(name=name, status="fail", message="not a store name, a local directory or a hub id")
    cached = (hub_cache() / f"models--{model.replace('/', '--')}").is_dir()
    gated = model.startswith(GATED_ORGS)
    if cached:
        return Check(name=name, status="ok", message=f"in the Hugging Face cache ({hub_cache()})")
    if gated and not hf_token():
        fix = "accept its licence on huggingface.co, then `export HF_TOKEN=...` (or `huggingface-cli login`)"
        return Check(name=name, status="fail", message=f"gated and no token found: {fix}")
    return Check(name=name, status="warn", message="not in the Hugging Face cache: vLLM downloads it at first start")


def llamacpp(needed: bool) -> Check:
    """The llama-server a llama.cpp rung would run: where it is, its version, the CPU backend it loads here and the
    features that backend was compiled with, and whether the tool built it (see llamacpp_build.py)."""
    from llm_ladder.engines.base import EngineError
    from llm_ladder.engines.llamacpp import cpu_backend, find_binary, version
    from llm_ladder.engines.llamacpp_build import build_dir, isa_key

    try:
        binary = find_binary("llama-server")
    except EngineError as err:
        return Check(name="llama.cpp", status="fail" if needed else "skip", message=str(err))
    ours = binary.parent.parent == build_dir()
    built = f"built by ladder for this CPU ({isa_key()})" if ours else "not built by ladder"
    return Check(name="llama.cpp", status="ok", message=f"{binary}: {version(binary)}; {cpu_backend(binary)}; {built}")


def diagnose(plan: Plan | None, store: ModelStore) -> list[Check]:
    in_docker = plan is not None and plan.engine.endswith("docker")
    uses_llamacpp = plan is not None and any(plan.engine_of(r) == "llama.cpp" for r in plan.rungs)
    steps: list[Callable[[], Check | list[Check]]] = [
        versions,
        lambda: llamacpp(uses_llamacpp),
        lambda: docker(in_docker),
        lambda: gpus(plan),
        lambda: host_memory(plan),
        leftovers,
    ]
    if plan is not None:
        steps.append(lambda: models(plan, store))
    checks: list[Check] = []
    for step in steps:
        found = step()
        checks += found if isinstance(found, list) else [found]
    return checks
