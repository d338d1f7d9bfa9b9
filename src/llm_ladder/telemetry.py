"""Memory telemetry: peak RSS of the engine's process tree, device memory through NVML where present."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
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
    shm_left_gib: float | None = None
    """Shared-memory segments (/dev/shm) that appeared during the rung and outlived the engine."""

    def unreleased(self, tolerance_gib: float) -> str:
        """What the stop did not give back, beyond the tolerance; empty when all came back.

        Host 'available' memory is recorded but not judged: other processes move it. On the host, memory
        comes back when the engine's processes are gone (checked by the stop) and left no shared memory.
        """
        problems = []
        if self.shm_left_gib is not None and self.shm_left_gib > tolerance_gib:
            problems.append(f"{self.shm_left_gib:.2f} GiB of shared memory left in /dev/shm")
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


SHM = Path("/dev/shm")


class Snapshot:
    """Memory state before a rung starts, to compare with after it stopped."""

    def __init__(self) -> None:
        used = _Nvml().used()
        self.host_available_gib = psutil.virtual_memory().available / GIB
        self.gpu_used_gib = None if used is None else used / GIB
        self.shm = set(SHM.iterdir()) if SHM.is_dir() else set()

    def record_after(self, memory: MemoryStats) -> None:
        """Fill `memory` with the before/after values and the shared memory left since this snapshot."""
        after = Snapshot()
        memory.host_available_before_gib, memory.host_available_after_gib = (
            self.host_available_gib,
            after.host_available_gib,
        )
        memory.gpu_used_before_gib, memory.gpu_used_after_gib = self.gpu_used_gib, after.gpu_used_gib
        memory.shm_left_gib = sum(_size(p) for p in after.shm - self.shm) / GIB


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
