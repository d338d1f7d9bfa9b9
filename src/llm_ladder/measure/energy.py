"""Energy counters: joules used while a workload ran, from the first source this host has — NVML on NVIDIA
GPUs, tegrastats on Jetson, Linux RAPL (powercap) on CPUs. Each counts the whole device or CPU package, idle
draw included, not one process. Where none exists the answer is None ("n/a"), never an estimate.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

from llm_ladder.measure import nvml

RAPL_ROOT = Path("/sys/class/powercap")


class EnergySource(Protocol):
    name: str

    def joules(self) -> float:
        """A cumulative reading; only differences mean something."""

    def close(self) -> None: ...


class Rapl:
    """Package domains (intel-rapl:N, not their sub-domains), each wrapping at max_energy_range_uj."""

    name = "RAPL"

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not self.domains:
            raise OSError("no RAPL package domains")
        self.ranges = [int((d / "max_energy_range_uj").read_text()) for d in self.domains]
        self.last = [self._read(d) for d in self.domains]  # raises PermissionError where energy_uj is root-only
        self.total_uj = 0

    @staticmethod
    def _read(domain: Path) -> int:
        return int((domain / "energy_uj").read_text())

    def joules(self) -> float:
        for i, domain in enumerate(self.domains):
            now = self._read(domain)
            self.total_uj += (now - self.last[i]) % (self.ranges[i] + 1)  # a wrap reads as a smaller number
            self.last[i] = now
        return self.total_uj / 1e6

    def close(self) -> None:
        return None


class Nvml:
    """nvmlDeviceGetTotalEnergyConsumption (millijoules since the driver loaded), summed over the GPUs; the NVML
    session stays open until `close`."""

    name = "NVML"

    def __init__(self) -> None:
        self.stack = ExitStack()
        try:
            self.gpus = self.stack.enter_context(nvml.session())
            if not self.gpus.handles:
                raise OSError("no NVIDIA GPU")
            self.joules()  # raises NVMLError_NotSupported on GPUs without the counter
        except BaseException:
            self.stack.close()
            raise

    def joules(self) -> float:
        return self.gpus.energy_j()

    def close(self) -> None:
        self.stack.close()


TEGRA_INPUT = re.compile(r"\b(VDD_IN|VIN_SYS_5V0|VIN)\s+(\d+)mW")
"""The board's input rail: VDD_IN on Orin, VIN_SYS_5V0 on Thor's developer kit."""


class PowerIntegrator:
    """Energy from power samples (trapezoids between consecutive samples)."""

    def __init__(self) -> None:
        self.total, self.last_t, self.last_w = 0.0, None, 0.0
        self.lock = threading.Lock()

    def add(self, watts: float, now: float) -> None:
        with self.lock:
            if self.last_t is not None:
                self.total += (self.last_w + watts) / 2 * (now - self.last_t)
            self.last_t, self.last_w = now, watts

    def joules(self) -> float:
        with self.lock:
            return self.total


def input_watts(line: str) -> float | None:
    """The board's input power in a tegrastats line, in watts."""
    match = TEGRA_INPUT.search(line)
    return int(match.group(2)) / 1000 if match else None


class Tegrastats:
    """Integrates the input-rail power tegrastats prints every `interval_ms` (Jetson has no energy counter)."""

    name = "tegrastats"

    def __init__(self, interval_ms: int = 100, command: str = "tegrastats") -> None:
        exe = shutil.which(command)
        if exe is None:
            raise OSError(f"{command} not found")
        self.proc = subprocess.Popen(
            [exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL
        )
        self.power = PowerIntegrator()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if (watts := input_watts(line)) is not None:
                self.power.add(watts, time.perf_counter())

    def joules(self) -> float:
        return self.power.joules()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)


def open_energy_source(gpu: bool = True) -> EnergySource | None:
    """The first source that works here, or None; `gpu=False` for work on the CPU alone (a GPU's counter would
    measure the wrong chip)."""
    for make in (Nvml, Tegrastats, Rapl) if gpu else (Rapl, Tegrastats):
        try:
            return make()
        except Exception:  # missing library, device, file or permission: try the next source
            continue
    return None
