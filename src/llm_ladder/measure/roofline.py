"""Roofline: how close each rung's decoding comes to the memory-bandwidth limit.

At batch 1 every decode step reads all the weights once, plus the KV cache of the context so far, so
bytes per step × steps per second is the bandwidth the rung actually used; divided by what the memory can do it
says how much speed is left on the table. (The workshop's Thor figures sit at roughly 45–63% of 273 GB/s.)
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from llm_ladder.measure import nvml
from llm_ladder.measure.telemetry import GIB

if TYPE_CHECKING:  # annotations only: the GPU benchmark imports this module without the engine's dependencies
    from llm_ladder.measure.metrics import WorkloadStats

KNOWN_BANDWIDTH_GBS: dict[str, tuple[str, float]] = {
    # the device's name exactly as NVML (GPUs) or /proc/device-tree/model (Jetsons) gives it → (label, GB/s).
    # Exact, not a substring: "NVIDIA L40" is not an L4, "NVIDIA GH200 480GB" not an H200. Anything else is measured.
    "NVIDIA Jetson AGX Thor Developer Kit": ("Jetson AGX Thor", 273.0),
    "NVIDIA Jetson AGX Orin Developer Kit": ("Jetson AGX Orin", 204.8),
    "NVIDIA Jetson Orin NX Engineering Reference Developer Kit": ("Jetson Orin NX", 102.4),
    "NVIDIA Jetson Orin Nano Developer Kit": ("Jetson Orin Nano", 68.0),
    "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super": ("Jetson Orin Nano Super", 102.0),
    "NVIDIA GB10": ("DGX Spark (GB10)", 273.0),
    "NVIDIA H200": ("H200 SXM", 4800.0),
    "NVIDIA H200 NVL": ("H200 NVL", 4800.0),
    "NVIDIA H100 80GB HBM3": ("H100 SXM", 3350.0),
    "NVIDIA H100 NVL": ("H100 NVL", 3900.0),
    "NVIDIA H100 PCIe": ("H100 PCIe", 2000.0),
    "NVIDIA B200": ("B200", 8000.0),
    "NVIDIA A100-SXM4-80GB": ("A100 SXM 80GB", 2039.0),
    "NVIDIA A100-SXM4-40GB": ("A100 SXM 40GB", 1555.0),
    "NVIDIA A100 80GB PCIe": ("A100 PCIe 80GB", 1935.0),
    "NVIDIA A100-PCIE-40GB": ("A100 PCIe 40GB", 1555.0),
    "NVIDIA L40S": ("L40S", 864.0),
    "NVIDIA L40": ("L40", 864.0),
    "NVIDIA L4": ("L4", 300.0),
    "NVIDIA GeForce RTX 5090": ("RTX 5090", 1792.0),
    "NVIDIA GeForce RTX 4090": ("RTX 4090", 1008.0),
    "NVIDIA RTX 6000 Ada Generation": ("RTX 6000 Ada", 960.0),
}


class Bandwidth(BaseModel):
    gbs: float
    source: str
    """Where the figure comes from: a known device's datasheet, or a measurement on this host."""


class Roofline(BaseModel):
    """One workload on one rung. `percent` is of the memory bandwidth."""

    workload: str
    weight_gib: float
    kv_mib_per_step: float
    context_tokens: float
    tokens_per_step: float
    """Mean accepted length under speculative decoding (a step reads the weights once for several tokens)."""
    steps_per_s: float
    achieved_gbs: float
    bandwidth_gbs: float
    percent: float


def known_bandwidth(device_name: str) -> Bandwidth | None:
    """The datasheet figure of a device known by its exact name; None (measure it) for any other."""
    known = KNOWN_BANDWIDTH_GBS.get(device_name.strip("\x00\n "))
    return Bandwidth(gbs=known[1], source=f"{known[0]} (datasheet)") if known else None


COPY_WORKER = """
import os, sys, time
size, start_at, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
src, dst = bytearray(os.urandom(1024)) * (size // 1024), bytearray(size)
dst[:] = src  # touch every page before timing
time.sleep(max(0.0, start_at - time.perf_counter()))
start, moved = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    dst[:] = src  # a memmove: read size bytes, write size bytes
    moved += 2 * size
print(start, time.perf_counter(), moved)
"""


def measure_host_bandwidth(seconds: float = 1.0, size_mib: int = 128) -> Bandwidth:
    """A STREAM-like copy on every core at once: one process per core (Python threads would share one core),
    each copying a buffer larger than any cache, all starting at the same moment (perf_counter is the system's
    monotonic clock); bytes read plus written over the common span."""
    n = os.cpu_count() or 1
    start_at = time.perf_counter() + 1.0  # time for every interpreter to start and fill its buffers
    args = [str(size_mib << 20), repr(start_at), str(seconds)]
    procs = [
        subprocess.Popen([sys.executable, "-c", COPY_WORKER, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    spans = [tuple(map(float, p.communicate(timeout=60 + seconds)[0].split())) for p in procs]
    elapsed = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    gbs = sum(moved for _, _, moved in spans) / elapsed / 1e9
    return Bandwidth(gbs=round(gbs, 1), source=f"measured here: copy, {n} processes × {size_mib} MiB")


def measure_gpu_bandwidth(gib: int = 2, repeats: int = 10) -> Bandwidth:
    """A device-to-device copy on CUDA GPU 0, read plus written bytes as STREAM counts them."""
    import torch

    src = torch.empty(gib << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    torch.cuda.synchronize()
    gbs = 2 * src.numel() * repeats / (time.perf_counter() - start) / 1e9
    return Bandwidth(gbs=round(gbs, 1), source=f"measured here: device copy, {gib} GiB")


@functools.cache
def device_bandwidth(device: str) -> Bandwidth:
    """The bandwidth a model on `device` decodes against: a Jetson's (shared memory) or the GPU's datasheet
    figure, else measured on that device."""
    if (name := jetson_model()) and (known := known_bandwidth(name)):
        return known
    if device.startswith("cuda"):
        import torch

        return known_bandwidth(torch.cuda.get_device_name(device)) or measure_gpu_bandwidth()
    return measure_host_bandwidth()


def jetson_model() -> str | None:
    path = Path("/proc/device-tree/model")
    return path.read_text(errors="replace").strip("\x00\n ") if path.is_file() else None


def _gpu_name() -> str | None:
    try:
        with nvml.session() as gpus:
            return gpus.name(0) if gpus.handles else None
    except nvml.Unavailable:  # no library, no driver, no device: not a GPU host
        return None


@functools.cache
def host_bandwidth(override_gbs: float | None = None) -> Bandwidth | str:
    """The memory bandwidth decoding runs against here: a Jetson's or GPU's datasheet figure, else measured on a
    CPU host; on a GPU that is not in the table, why there is none (the host's DRAM is not what a GPU reads)."""
    if override_gbs:
        return Bandwidth(gbs=override_gbs, source="given")
    gpu = _gpu_name()
    for name in (jetson_model(), gpu):
        if name and (known := known_bandwidth(name)):
            return known
    if gpu:
        return _measure_gpu_apart(gpu)
    return measure_host_bandwidth()


def _measure_gpu_apart(gpu: str) -> Bandwidth | str:
    """An unknown GPU's bandwidth, measured by a device copy in a process of its own (the climb's own process
    must not hold a CUDA context while engines are measured); why not, where torch or CUDA is missing."""
    code = "from llm_ladder.measure.roofline import measure_gpu_bandwidth as m; print(m().model_dump_json())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        return Bandwidth.model_validate_json(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as err:
        why = f"{gpu} is not in the datasheet table and a device copy could not be timed ({type(err).__name__})"
        return f"{why}: set `memory_bandwidth_gbs` in the plan"


def sizes_kv(config: dict[str, Any]) -> bool:
    """Whether `kv_bytes_per_token` can size this config's KV cache (a decoder config it knows)."""
    try:
        kv_bytes_per_token(config)
    except (KeyError, TypeError, ZeroDivisionError):
        return False
    return True


def kv_bytes_per_token(config: dict[str, Any], kv_dtype_bytes: int = 2) -> int:
    """Bytes of K and V one token of context adds (and a decode step reads back), from a HF config.json."""
    config = config.get("text_config", config)
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * layers * kv_heads * head_dim * kv_dtype_bytes


def roofline(
    workload: str,
    weight_bytes: float,
    kv_per_token: int,
    context_tokens: float,
    decode_tps: float,
    bandwidth: Bandwidth,
    tokens_per_step: float = 1.0,
) -> Roofline:
    kv = kv_per_token * context_tokens
    steps = decode_tps / tokens_per_step
    achieved = (weight_bytes + kv) * steps / 1e9
    return Roofline(
        workload=workload,
        weight_gib=weight_bytes / GIB,
        kv_mib_per_step=kv / 2**20,
        context_tokens=context_tokens,
        tokens_per_step=tokens_per_step,
        steps_per_s=steps,
        achieved_gbs=achieved,
        bandwidth_gbs=bandwidth.gbs,
        percent=100 * achieved / bandwidth.gbs,
    )


def workload_rooflines(
    workloads: dict[str, WorkloadStats],
    weight_gib: float | None,
    config: dict[str, Any] | None,
    bandwidth: Bandwidth,
    tokens_per_step: dict[str, float],
    kv_dtype_bytes: float = 2,
) -> list[Roofline]:
    """A roofline per workload with a decode speed; none without the weights' size or the model's config (the
    context the KV cache holds is the prompt plus half the answer, its mean over the decode)."""
    if weight_gib is None or config is None or not sizes_kv(config):  # not a decoder config: no guess
        return []
    kv = kv_bytes_per_token(config, kv_dtype_bytes)
    out = []
    for name, stats in workloads.items():
        if not stats.decode_tps or stats.prompt_tokens is None or not stats.completion_tokens:
            continue
        context = stats.prompt_tokens + stats.completion_tokens.median / 2
        step = tokens_per_step.get(name) or 1.0
        out.append(roofline(name, weight_gib * GIB, kv, context, stats.decode_tps.median, bandwidth, step))
    return out
