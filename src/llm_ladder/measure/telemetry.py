"""Memory telemetry: peak RSS of the engine's process tree, device memory through NVML (nvml.py) where present."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path

import psutil
from pydantic import BaseModel

from llm_ladder.measure import nvml

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
    gpu_unread: str | None = None
    """Why device memory was not read on a host with an NVIDIA driver (NVML broken or missing): the peak shown
    is then the engine's RSS, and the tables say so."""

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
        used = gpu_memory_used()
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
        memory.shm_left_gib = sum(_size(p) for p in _unheld(after.shm - self.shm)) / GIB


def _unheld(paths: set[Path]) -> set[Path]:
    """The segments no live process has open or mapped: another engine's (a fleet cell on the next GPU, a server
    the user runs beside) are in use, not left behind by this rung."""
    if not paths:
        return paths
    held: set[str] = set()
    for proc in psutil.process_iter():
        with suppress(psutil.Error):
            held.update(m.path for m in proc.memory_maps(grouped=True))
            held.update(f.path for f in proc.open_files())
    return {p for p in paths if str(p) not in held}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def gpu_memory_used() -> int | None:
    """Device memory in use now, summed over the GPUs; None where NVML cannot say."""
    try:
        with nvml.session() as gpus:
            return gpus.memory_used()
    except nvml.Unavailable:
        return None


class MemorySampler:
    """Samples memory in a background thread while a rung runs; `stop()` returns the peaks."""

    def __init__(self, pids: Callable[[], list[int]], interval_s: float = 0.25) -> None:
        self._pids, self._interval = pids, interval_s
        self._peak_rss = 0
        self._peak_gpu: int | None = None
        self._gpu_unread: str | None = None
        self._stack = ExitStack()
        self._nvml = self._open_nvml()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def _open_nvml(self) -> nvml.Session | None:
        """An NVML session for the sampler's life; on a GPU host, why there is none is kept for the result."""
        try:
            session = self._stack.enter_context(nvml.session())
            session.memory_used()
            return session
        except nvml.Unavailable as err:
            self._stack.close()
            self._gpu_unread = str(err) if nvml.gpu_host() else None
            return None

    def sample(self) -> None:
        self._peak_rss = max(self._peak_rss, tree_rss(self._pids()))
        if self._nvml is not None:
            with suppress(nvml.Unavailable):
                self._peak_gpu = max(self._peak_gpu or 0, self._nvml.memory_used())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def stop(self) -> MemoryStats:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._stack.close()
        return MemoryStats(
            peak_rss_gib=self._peak_rss / GIB if self._peak_rss else None,
            gpu_peak_gib=self._peak_gpu / GIB if self._peak_gpu is not None else None,
            gpu_unread=self._gpu_unread,
        )
