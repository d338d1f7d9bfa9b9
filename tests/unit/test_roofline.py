import sys
import time

import pytest

from llm_ladder.measure.energy import PowerIntegrator, Rapl, Tegrastats, input_watts
from llm_ladder.measure.roofline import (
    KNOWN_BANDWIDTH_GBS,
    Bandwidth,
    known_bandwidth,
    kv_bytes_per_token,
    measure_host_bandwidth,
    roofline,
    workload_rooflines,
)
from llm_ladder.measure.telemetry import GIB

from .test_summary import _stats

LLAMA_8B = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096}
THOR = Bandwidth(gbs=273, source="Jetson AGX Thor (datasheet)")


def test_the_workshops_thor_figures_sit_at_45_to_63_percent():
    kv = kv_bytes_per_token(LLAMA_8B)
    assert kv == 2 * 32 * 8 * 128 * 2  # K and V, 8 KV heads of 128, bf16
    fp16 = roofline("long", 14.99 * GIB, kv, 300, 10.7, THOR)
    fp4 = roofline("long", 6.07 * GIB, kv, 300, 19.1, THOR)
    # by hand: (weights + the KV cache of 300 tokens) read once per token, against 273 GB/s
    assert fp16.percent == pytest.approx((14.99 * 2**30 + 131072 * 300) * 10.7 / 273e9 * 100)  # 63.2%
    assert fp4.percent == pytest.approx((6.07 * 2**30 + 131072 * 300) * 19.1 / 273e9 * 100)  # 46.0%
    assert fp16.kv_mib_per_step == pytest.approx(37.5)


def test_speculation_reads_the_weights_once_per_step_not_per_token():
    plain = roofline("long", 6.86 * GIB, 0, 0, 25.6, THOR)
    spec = roofline("long", 6.86 * GIB, 0, 0, 25.6, THOR, tokens_per_step=2.5)
    assert spec.steps_per_s == pytest.approx(25.6 / 2.5) and spec.percent == pytest.approx(plain.percent / 2.5)


def test_workload_rooflines_need_weights_and_a_config():
    stats = {"long": _stats(10)}
    assert workload_rooflines(stats, None, LLAMA_8B, THOR, {}) == []
    assert workload_rooflines(stats, 1.0, None, THOR, {}) == []
    assert workload_rooflines(stats, 1.0, {"model_type": "unknown"}, THOR, {}) == []
    (roof,) = workload_rooflines(stats, 1.0, LLAMA_8B, THOR, {"long": 2.0}, kv_dtype_bytes=1)
    assert roof.context_tokens == 20 + 512 / 2 and roof.tokens_per_step == 2.0
    assert roof.kv_mib_per_step == pytest.approx(kv_bytes_per_token(LLAMA_8B, 1) * 276 / 2**20)


DATASHEETS = {  # typed from the vendors' datasheets, apart from the table under test
    "NVIDIA Jetson AGX Thor Developer Kit": 273, "NVIDIA Jetson AGX Orin Developer Kit": 204.8,
    "NVIDIA Jetson Orin NX Engineering Reference Developer Kit": 102.4, "NVIDIA Jetson Orin Nano Developer Kit": 68,
    "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super": 102, "NVIDIA GB10": 273,
    "NVIDIA H200": 4800, "NVIDIA H200 NVL": 4800, "NVIDIA H100 80GB HBM3": 3350, "NVIDIA H100 NVL": 3900,
    "NVIDIA H100 PCIe": 2000, "NVIDIA B200": 8000, "NVIDIA A100-SXM4-80GB": 2039, "NVIDIA A100-SXM4-40GB": 1555,
    "NVIDIA A100 80GB PCIe": 1935, "NVIDIA A100-PCIE-40GB": 1555, "NVIDIA L40S": 864, "NVIDIA L40": 864,
    "NVIDIA L4": 300, "NVIDIA GeForce RTX 5090": 1792, "NVIDIA GeForce RTX 4090": 1008,
    "NVIDIA RTX 6000 Ada Generation": 960,
}  # fmt: skip


def test_the_table_holds_exactly_the_datasheet_devices():
    assert set(KNOWN_BANDWIDTH_GBS) == set(DATASHEETS)


@pytest.mark.parametrize(("name", "gbs"), DATASHEETS.items())
def test_every_known_device_is_found_by_its_exact_name(name, gbs):
    assert known_bandwidth(name).gbs == gbs and known_bandwidth(f" {name}\n").gbs == gbs  # NVML / device-tree text


@pytest.mark.parametrize(
    "name", ["NVIDIA GH200 480GB", "NVIDIA L4 Tensor Core", "NVIDIA H100", "Orin NX", "NVIDIA H20"]
)
def test_a_name_that_only_contains_a_known_one_is_measured(name):
    assert known_bandwidth(name) is None  # substring matching gave GH200 the H200's, an L40 the L4's bandwidth
    assert known_bandwidth("NVIDIA L40").gbs == 864


def test_unknown_devices_are_measured_not_guessed():
    assert known_bandwidth("Some Future Accelerator") is None
    measured = measure_host_bandwidth(seconds=0.2, size_mib=16)
    assert measured.gbs > 0.5 and measured.source.startswith("measured here")


def test_rapl_sums_packages_and_survives_a_wrap(tmp_path):
    for name, energy in (("intel-rapl:0", 900), ("intel-rapl:1", 100), ("intel-rapl:0:0", 5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "energy_uj").write_text(str(energy))
        (tmp_path / name / "max_energy_range_uj").write_text("999")
    rapl = Rapl(tmp_path)
    assert [d.name for d in rapl.domains] == ["intel-rapl:0", "intel-rapl:1"]  # sub-domains are inside packages
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("99")  # wrapped: 900 → 999 → 0 → 99 is 199 µJ
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("150")
    assert rapl.joules() == pytest.approx(249e-6)


def test_rapl_without_domains_or_permission_is_unavailable(tmp_path):
    with pytest.raises(OSError):
        Rapl(tmp_path)


def test_tegrastats_power_is_integrated(tmp_path):
    assert input_watts("RAM 2000/3000MB VDD_IN 12500mW/12000mW VDD_CPU_GPU_CV 3000mW/2900mW") == 12.5
    assert input_watts("VIN_SYS_5V0 30000mW/30000mW") == 30.0 and input_watts("RAM 1/2MB") is None
    power = PowerIntegrator()
    for watts, now in ((10, 0.0), (20, 1.0), (20, 2.0)):
        power.add(watts, now)
    assert power.joules() == pytest.approx(15 + 20)
    fake = tmp_path / "tegrastats"
    fake.write_text(f"#!{sys.executable}\nimport time\nwhile True:\n    print('VDD_IN 10000mW/10000mW', flush=True)\n"
                    "    time.sleep(0.05)\n")  # fmt: skip
    fake.chmod(0o755)
    source = Tegrastats(command=str(fake))
    try:
        time.sleep(0.6)
        assert 2 < source.joules() < 7  # ~10 W for ~0.5 s
    finally:
        source.close()


def test_an_unknown_gpu_is_measured_apart_or_said_why_not(monkeypatch):
    from llm_ladder.measure import roofline as mod

    monkeypatch.setattr(mod, "jetson_model", lambda: None)
    monkeypatch.setattr(mod, "_gpu_name", lambda: "NVIDIA H20")
    mod.host_bandwidth.cache_clear()
    try:
        found = mod.host_bandwidth()
    finally:
        mod.host_bandwidth.cache_clear()
    if isinstance(found, str):  # no CUDA here: the host's DRAM is not what that GPU reads, so no figure at all
        assert found.startswith("NVIDIA H20 is not in the datasheet table") and "memory_bandwidth_gbs" in found
    else:
        assert found.source.startswith("measured here: device copy") and found.gbs > 100
