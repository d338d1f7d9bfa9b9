"""`ladder plan auto`: the rungs chosen per ISA and GPU class, from faked /proc/cpuinfo text and NVML answers."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.models.store import ModelStore
from llm_ladder.plan.auto import auto_plan
from llm_ladder.plan.hardware import Hardware, parse_cpuinfo, read_gpus
from llm_ladder.plan.loading import parse_plan

AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2"
AVX512 = AVX2 + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
SAPPHIRE = AVX512 + " avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8"


def cpu(flags: str):
    return parse_cpuinfo(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n", cores=2)


class FakeNvml:
    """The NVML calls hardware.read_gpus makes, answering for one GPU."""

    def __init__(self, name: str, capability: tuple[int, int], fail: bool = False) -> None:
        self.name, self.capability, self.fail, self.shutdown = name, capability, fail, False

    def nvmlInit(self):
        if self.fail:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.name.encode()

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self.capability

    def nvmlDeviceGetMemoryInfo(self, h):
        return type("Mem", (), {"total": 80 * 2**30})()


def plan_for(flags: str, store, gpu=None, model=None):
    gpus = read_gpus(gpu) if gpu else []
    return auto_plan(model, Hardware(cpu(flags), gpus), store)


def choices(plan):
    return {c.rung: (c.included, c.reason) for c in plan.selection.choices}


@pytest.fixture
def store(tmp_path):
    return ModelStore(tmp_path / "models")


def test_cpuinfo_flags_and_the_vllm_library_each_isa_loads():
    assert cpu(SAPPHIRE).vllm_library == "_C" and cpu(SAPPHIRE).isa == "amx"
    assert cpu(AVX512).vllm_library == "_C_AVX512" and not cpu(AVX512).native_bf16
    assert cpu(AVX2).vllm_library == "_C_AVX2" and not cpu(AVX2).int8_dot
    assert cpu(AVX2).model == "Test CPU" and cpu(AVX2).cores == 2


def test_amx_climbs_rtn_and_calibrated_int8_int4_on_the_q4_1_grid_and_ngram(store):
    plan = plan_for(SAPPHIRE, store)
    assert [r.name for r in plan.rungs] == ["bf16", "int8-rtn", "int8-mixed", "int8", "int4", "int4-ngram"]
    assert [r.model for r in plan.rungs[1:4]] == [
        f"smollm2-135m-instruct-{s}" for s in ("w8a8", "w8a8-mixed", "w8a8-gptq")
    ]
    int4 = json.loads(plan.rung("int4").args["hf_overrides"]["quantization_config_dict_json"])
    assert int4["_data"]["group_size"] == 32 and int4["_data"]["layout"]["_type"] == "Int4CPULayout"
    assert plan.rung("int4-ngram").speculative["method"] == "ngram"
    assert plan.without_speculation(plan.rung("int4-ngram")).name == "int4"  # greedy identity has its reference
    assert not choices(plan)["fp8"][0] and "--scheme fp8" in choices(plan)["fp8"][1]  # offered, not climbed
    assert plan.rung("bf16").args["dtype"] == "bfloat16"


def test_avx2_without_vnni_leaves_int8_out_and_keeps_vllm_s_bf16_baseline(store):
    plan = plan_for(AVX2, store)
    assert [r.name for r in plan.rungs] == ["bf16", "int4", "int4-ngram"]
    assert {r.args["dtype"] for r in plan.rungs} == {"bfloat16"}
    included, reason = choices(plan)["bf16"]
    assert included and "emulated" in reason and "dtype: float32" in reason  # the quicker climb, with its cost
    assert not choices(plan)["int8"][0] and "VNNI" in choices(plan)["int8"][1]
    assert "need AMX" in choices(plan)["fp8"][1]
    assert "#55613" in choices(plan)["int4-gptq"][1]


def test_avx512_without_bf16_gets_int8_with_vnni(store):
    plan = plan_for(AVX512, store)
    assert [r.name for r in plan.rungs] == ["bf16", "int8-rtn", "int8-mixed", "int8", "int4", "int4-ngram"]
    assert "VNNI" in choices(plan)["int8"][1]


def test_a_model_outside_the_store_gets_no_checkpoint_rungs(store, tmp_path):
    plan = plan_for(SAPPHIRE, store, model=str(tmp_path / "elsewhere"))
    names = [r.name for r in plan.rungs]
    assert "int8" not in names and "not in the model store" in choices(plan)["int8"][1]
    assert "int4" in names and "group 64" in choices(plan)["int4"][1]
    assert names[-1] == "bf16-ngram"  # no quantized rung is expected to keep quality: speculation on the baseline


@pytest.mark.parametrize(
    ("name", "cap", "rungs"),
    [
        ("NVIDIA H100 80GB HBM3", (9, 0), ["bf16", "fp8", "fp8-eagle3"]),
        ("NVIDIA L40S", (8, 9), ["bf16", "fp8", "fp8-eagle3"]),
        ("NVIDIA A100-SXM4-80GB", (8, 0), ["bf16", "fp8", "fp8-eagle3"]),
        ("NVIDIA B200", (10, 0), ["bf16", "fp8", "fp4", "fp4-eagle3"]),
        ("NVIDIA Thor", (11, 0), ["bf16", "fp8", "fp4", "fp4-eagle3"]),
        ("NVIDIA GeForce RTX 5090", (12, 0), ["bf16", "fp8", "fp4", "fp4-eagle3"]),
        ("Tesla T4", (7, 5), ["fp16", "fp16-eagle3"]),
    ],
)
def test_gpu_classes(store, name, cap, rungs):
    nvml = FakeNvml(name, cap)
    plan = plan_for(SAPPHIRE, store, gpu=nvml, model="meta-llama/Llama-3.1-8B-Instruct")
    assert [r.name for r in plan.rungs] == rungs and nvml.shutdown
    fp8 = choices(plan).get("fp8")
    if cap >= (8, 9):
        assert "W8A8" in fp8[1]
    elif cap >= (8, 0):
        assert "weight-only" in fp8[1]
    if cap < (10, 0) and cap >= (8, 0):
        assert "NVFP4 needs Blackwell" in choices(plan)["fp4"][1]


def test_unknown_model_on_blackwell_quantizes_fp8_online_and_says_why_no_fp4(store):
    plan = plan_for(SAPPHIRE, store, gpu=FakeNvml("NVIDIA B200", (10, 0)), model="org/other-7b")
    assert [r.name for r in plan.rungs] == ["bf16", "fp8", "fp8-ngram"]
    assert plan.rung("fp8").args["quantization"] == "fp8"
    assert "no NVFP4 checkpoint known" in choices(plan)["fp4"][1]


def test_broken_nvml_means_the_cpu_ladder(store):
    assert read_gpus(FakeNvml("x", (9, 0), fail=True)) == []


def test_written_plan_round_trips_with_its_reasons(store, tmp_path, monkeypatch):
    from llm_ladder.cli import plan as cli_plan
    from llm_ladder.cli.main import app

    monkeypatch.setattr(cli_plan, "machine_plan", lambda model, models_dir: plan_for(SAPPHIRE, store))
    out = tmp_path / "auto.yaml"
    result = CliRunner().invoke(app, ["plan", "auto", "--write", str(out)])
    assert result.exit_code == 0, result.output
    assert "+ int4: torchao int4" in result.output and "- fp8:" in result.output
    again = parse_plan(yaml.safe_load(out.read_text()))
    assert again == plan_for(SAPPHIRE, store)


def test_the_shipped_default_plan_is_what_auto_picks_on_amx(store):
    from llm_ladder.plan.loading import load_plan

    def key(r):
        settings = {k: r.args.get(k) for k in ("dtype", "quantization")}
        return r.model_dump(include={"name", "model", "speculative"}) | settings

    def torchao(plan):
        hf = (r.args.get("hf_overrides") for r in plan.rungs)
        return [json.loads(h["quantization_config_dict_json"]) for h in hf if h]

    shipped, auto = load_plan("smollm2-cpu"), plan_for(SAPPHIRE, store)
    assert torchao(shipped) == torchao(auto)
    assert [key(r) for r in shipped.rungs] == [key(r) for r in auto.rungs]
