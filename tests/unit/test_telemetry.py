"""Memory telemetry and its one NVML door: a GPU host whose NVML does not answer is named, never hidden."""

import os

import pytest

from llm_ladder.measure import nvml
from llm_ladder.measure.telemetry import MemorySampler
from llm_ladder.outputs.results import RungResult
from llm_ladder.outputs.summary import memory_cell


class FakeNvml:
    """pynvml's calls the tool makes, for two GPUs; counts inits and shutdowns."""

    def __init__(self, fail_init=False, used=(2 << 30, 3 << 30)):
        self.used, self.fail_init, self.inits, self.shutdowns = used, fail_init, 0, 0

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVMLError_DriverNotLoaded")
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.used)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, h):
        return type("Mem", (), {"used": self.used[h], "total": 80 << 30, "free": 1 << 30})()

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"


def test_a_session_shuts_nvml_down_and_says_why_it_could_not_open():
    lib = FakeNvml()
    with nvml.session(lib) as gpus:
        assert gpus.memory_used() == 5 << 30 and gpus.name(1) == "NVIDIA H200"
    assert lib.inits == lib.shutdowns == 1
    with pytest.raises(nvml.Unavailable, match=r"NVML did not start .*DriverNotLoaded"), nvml.session(FakeNvml(True)):
        pass


def test_a_gpu_host_whose_nvml_fails_shows_rss_and_says_so(monkeypatch):
    def broken(lib=None):
        raise nvml.Unavailable("NVML did not start (NVMLError_LibraryNotFound)")

    monkeypatch.setattr(nvml, "session", broken)
    monkeypatch.setattr(nvml, "gpu_host", lambda driver=None: True)
    sampler = MemorySampler(lambda: [os.getpid()], interval_s=0.01).start()
    memory = sampler.stop()
    assert memory.gpu_peak_gib is None and memory.peak_rss_gib > 0
    assert memory.gpu_unread == "NVML did not start (NVMLError_LibraryNotFound)"
    result = RungResult(name="r", status="ok", model="m", config={}, memory=memory)
    assert memory_cell(result) == f"{memory.peak_rss_gib:.2f} RSS ⚠ GPU unread"
    monkeypatch.setattr(nvml, "gpu_host", lambda driver=None: False)  # a CPU host: RSS is simply what there is
    cpu = MemorySampler(lambda: [os.getpid()], interval_s=0.01).start().stop()
    assert cpu.gpu_unread is None
    assert memory_cell(RungResult(name="r", status="ok", model="m", config={}, memory=cpu)).endswith(" RSS")


def test_the_sampler_reads_gpu_memory_and_shuts_nvml_down_when_stopped(monkeypatch):
    lib = FakeNvml()
    real = nvml.session
    monkeypatch.setattr(nvml, "session", lambda: real(lib))
    memory = MemorySampler(lambda: [os.getpid()], interval_s=0.01).start().stop()
    assert memory.gpu_peak_gib == 5 and memory.gpu_unread is None
    assert lib.inits == lib.shutdowns == 1  # NVML was never shut down before
    assert memory_cell(RungResult(name="r", status="ok", model="m", config={}, memory=memory)) == "5.00 GPU"
