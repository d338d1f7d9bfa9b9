"""Memory telemetry: peak RSS of the engine's process tree, device memory through NVML where present."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import psutil
from pydantic import BaseModel

GIB = 1024**3


class MemoryStats(BaseModel):
    """Peak memory over a rung; None where no source exists (never a made-up value)."""

    peak_rss_gib: float | None = None
    gpu_peak_gib: float | None = None
    host_available_before_gib: float | None = None
    host_available_after_gib: float | None = None
    gpu_used_before_gib: float | None = None
    gpu_used_after_gib: float | None = None

    def unreleased(self, tolerance_gib: float) -> str:
        """What the stop did not give back, beyond the tolerance; empty when all came back."""
        problems = []
        host_b, host_a = self.host_available_before_gib, self.host_available_after_gib
        if host_b is not None and host_a is not None and host_a < host_b - tolerance_gib:
            problems.append(f"host has {host_b - host_a:.2f} GiB less available")
        gpu_b, gpu_a = self.gpu_used_before_gib, self.gpu_used_after_gib
        if gpu_b is not None and gpu_a is not None and gpu_a > gpu_b + tolerance_gib:
            problems.append(f"GPU holds {gpu_a - gpu_b:.2f} GiB more than before")
        return "; ".join(problems)


def tree_rss(pids: list[int]) -> int:
    """Sum of RSS over the given processes (shared pages counted once per process, as `ps` does)."""
    total = 0
    for pid in pids:
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += psutil.Process(pid).memory_info().rss
    return total


def snapshot() -> tuple[float, float | None]:
    """Host memory available and GPU memory used, in GiB (None without NVML)."""
    used = _Nvml().used()
    return psutil.virtual_memory().available / GIB, None if used is None else used / GIB


class _Nvml:
    """Used device memory summed over all GPUs; absent when nvidia-ml-py or a driver is missing."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        with suppress(Exception):
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    def used(self) -> int | None:
        if not self.handles:
            return None
        return sum(self.nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles)


class MemorySampler:
    """Samples memory in a background thread while a rung runs; `stop()` returns the peaks."""

    def __init__(self, pids: Callable[[], list[int]], interval_s: float = 0.25) -> None:
        self._pids, self._interval = pids, interval_s
        self._peak_rss = 0
        self._peak_gpu: int | None = None
        self._nvml = _Nvml()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        self._peak_rss = max(self._peak_rss, tree_rss(self._pids()))
        used = self._nvml.used()
        if used is not None:
            self._peak_gpu = max(self._peak_gpu or 0, used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def stop(self) -> MemoryStats:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return MemoryStats(
            peak_rss_gib=self._peak_rss / GIB if self._peak_rss else None,
            gpu_peak_gib=self._peak_gpu / GIB if self._peak_gpu is not None else None,
        )
