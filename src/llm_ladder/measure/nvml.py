"""NVIDIA's management library (nvidia-ml-py), opened in one place. Every use is a session, `nvmlInit` …
`nvmlShutdown` (NVML counts them, so sessions may nest), and nothing stays open after it. `Unavailable` says why
there is no answer: no library, no driver or no GPU, which is expected on a CPU host and a finding on a GPU host
(`gpu_host`), where a number must then say it is not GPU memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

DRIVER = Path("/proc/driver/nvidia")


class Unavailable(RuntimeError):
    """NVML could not be asked; the message says why."""


def gpu_host(driver: Path = DRIVER) -> bool:
    """An NVIDIA kernel driver is loaded here, whether or not NVML answers."""
    return driver.is_dir()


@contextmanager
def session(lib: Any = None) -> Iterator[Session]:
    """An open NVML (`lib`: pynvml, or a fake with its calls); Unavailable when it cannot be opened."""
    if lib is None:
        try:
            import pynvml as lib
        except ImportError:
            raise Unavailable("nvidia-ml-py is not installed") from None
    try:
        lib.nvmlInit()
    except Exception as err:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: not a usable GPU host
        raise Unavailable(f"NVML did not start ({type(err).__name__}: {err})") from None
    try:
        try:
            opened = Session(lib)
        except Exception as err:  # listing the devices failed: as good as no NVML
            raise Unavailable(f"NVML lists no device ({type(err).__name__}: {err})") from None
        yield opened
    finally:
        with suppress(Exception):
            lib.nvmlShutdown()


def visible(count: int) -> list[int]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES's indices where it lists indices (a fleet cell's one
    GPU, so that its memory and energy are not its neighbours'), else all. NVML itself ignores the variable."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return list(range(count))
    items = [x.strip() for x in listed.split(",") if x.strip()]
    if not all(x.isdigit() for x in items):  # UUIDs, MIG instances: not mapped here, every GPU counts
        return list(range(count))
    return [int(x) for x in items if int(x) < count]


class Session:
    """The questions the tool asks NVML, over every GPU of the host."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.handles = [lib.nvmlDeviceGetHandleByIndex(i) for i in visible(lib.nvmlDeviceGetCount())]

    def name(self, index: int = 0) -> str:
        name = self.lib.nvmlDeviceGetName(self.handles[index])
        return name.decode() if isinstance(name, bytes) else str(name)

    def memory(self, index: int) -> Any:
        """nvmlDeviceGetMemoryInfo: total, free, used bytes (raises on Jetson's unified memory)."""
        return self.lib.nvmlDeviceGetMemoryInfo(self.handles[index])

    def memory_used(self) -> int:
        """Bytes of device memory in use, summed over the GPUs; Unavailable without a GPU or a reading."""
        if not self.handles:
            raise Unavailable("NVML lists no GPU")
        try:
            return sum(self.lib.nvmlDeviceGetMemoryInfo(h).used for h in self.handles)
        except Exception as err:
            raise Unavailable(f"no memory reading ({type(err).__name__}: {err})") from None

    def energy_j(self) -> float:
        """Joules since the driver loaded, summed over the GPUs (raises NVMLError_NotSupported without the counter)."""
        return sum(self.lib.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles) / 1000

    def driver(self) -> str:
        version = self.lib.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)

    def processes(self, index: int) -> list[int]:
        return [p.pid for p in self.lib.nvmlDeviceGetComputeRunningProcesses(self.handles[index])]
