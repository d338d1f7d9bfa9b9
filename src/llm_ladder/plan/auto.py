"""`ladder plan auto`: the ladder this machine can climb, with one line per rung saying why it is in or out.

The rules are what was measured or read in the engines' source (DESIGN.md, "facts already verified"):
- vLLM CPU 0.32: W8A8 int8 runs on every ISA (`CPUInt8ScaledMMLinearKernel`) but is ~0.5× bf16 without an
  int8 dot-product instruction (VNNI/AMX), 1.5× with AMX; compressed-tensors W4A16 needs `cpu_gemm_wna16`, which
  only the AVX-512 libraries have (vLLM #55613); torchao int4 (Int4CPULayout) runs everywhere; online FP8 fails
  (`_C::static_scaled_fp8_quant` has no CPU implementation) and static per-tensor FP8 checkpoints run W8A16 on AMX
  only (with the plugin fix in vllm_cpu_fixes.py); n-gram speculation runs.
- NVIDIA: FP8 W8A8 needs compute ≥ 8.9 (Ada, Hopper), Ampere gets FP8 weight-only (Marlin); NVFP4 needs
  compute ≥ 10.0 (Blackwell, Thor) and a pre-quantized checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_ladder.models.store import DEFAULT_MODEL, ModelStore, gguf_block
from llm_ladder.plan.hardware import CpuInfo, GpuInfo, Hardware
from llm_ladder.plan.loading import parse_plan
from llm_ladder.plan.schema import Choice, Plan, Selection

NGRAM = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
KNOWN_GPU_CHECKPOINTS: dict[str, dict[str, str]] = {
    "meta-llama/Llama-3.1-8B-Instruct": {
        "fp8": "nvidia/Llama-3.1-8B-Instruct-FP8",
        "fp4": "nvidia/Llama-3.1-8B-Instruct-FP4",
        "eagle3": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
    },
}
"""Pre-quantized checkpoints and EAGLE3 heads known to match a base model (the workshop's)."""


@dataclass
class Ladder:
    """Rungs chosen so far (raw plan dicts) and every decision with its reason."""

    rungs: list[dict[str, Any]]
    choices: list[Choice]
    keeps_quality: set[str] = field(default_factory=set)
    """Quantized rungs expected inside the budget: where speculation goes."""

    def add(self, rung: dict[str, Any], reason: str, keeps_quality: bool = False) -> None:
        self.rungs.append(rung)
        self.choices.append(Choice(rung=rung["name"], included=True, reason=reason))
        if keeps_quality:
            self.keeps_quality.add(rung["name"])

    def skip(self, name: str, reason: str) -> None:
        self.choices.append(Choice(rung=name, included=False, reason=reason))

    def has(self, name: str) -> bool:
        return any(r["name"] == name for r in self.rungs)


EMULATED_BF16 = (
    "bf16 is emulated here (no AVX512-BF16/AMX), yet vLLM's default and the faster decode: vLLM 0.32 on a 2-core "
    "AVX2 EPYC decoded SmolLM2 long outputs at 13.2 tok/s in bf16, 8.5 in fp32; fp32 would shorten the climb "
    "(its baseline rung took 769 s there against bf16's 1136: suites 73 s vs 332, answer scoring 21 vs 129, "
    "agreement 15 vs 86), so `dtype: float32` in a plan trades that baseline's decode speed for a quicker climb"
)
"""Measured, not probed: a torch matmul probe picked fp32 on that machine (576×1536 at batch 1 on one core: bf16
250 µs, fp32 125) and bf16 with an 8B shape or two threads, while vLLM's own kernels decode faster in bf16. And
torchao's int4 CPU matmul is fast with bf16 activations only (576×1536, group 32: fp32 3.5 ms at batch 1 and 1343 ms
at 512, bf16 0.30 and 38): a plan with an fp32 baseline should keep its int4 rungs in bf16."""


def cpu_baseline_reason(cpu: CpuInfo) -> str:
    """Why the CPU baseline is bf16 on every x86 CPU, as vLLM chooses: native, or emulated (see EMULATED_BF16)."""
    return "native bf16 (AVX512-BF16/AMX)" if cpu.native_bf16 else EMULATED_BF16


def _torchao_int4(group: int) -> dict[str, Any]:
    data = {"group_size": group, "layout": {"_type": "Int4CPULayout", "_version": 1, "_data": {}}}
    return {
        "quantization_config_dict_json": json.dumps({"_type": "Int4WeightOnlyConfig", "_version": 1, "_data": data})
    }


def cpu_ladder(model: str, cpu: CpuInfo, store: ModelStore) -> Ladder:
    """The vLLM CPU ladder for a store model (quantized variants are made locally) on this ISA."""
    ladder = Ladder([], [])
    stored = store.has(model) or store.can_make(model)
    dtype = "bfloat16"
    ladder.add(
        {"name": "bf16", "model": model, "dtype": dtype}, f"the quality baseline in {dtype}: {cpu_baseline_reason(cpu)}"
    )
    _cpu_int8(ladder, model, cpu, stored, dtype)
    _cpu_int4(ladder, model, cpu, stored, dtype)
    _cpu_speculation(ladder, "bf16")
    ladder.skip("fp8", _cpu_fp8_reason(cpu))
    return ladder


def _cpu_fp8_reason(cpu: CpuInfo) -> str:
    """FP8 on vLLM CPU 0.32: online FP8 fails; a static per-tensor checkpoint runs W8A16 on AMX only."""
    if not cpu.has("amx_tile"):
        return "vLLM CPU's FP8 kernels need AMX (Sapphire Rapids or newer); online FP8 has no CPU kernel at all"
    return ("runs here (`ladder models quantize --scheme fp8`: static per-tensor FP8 weights, AMX W8A16 kernel, "
            "loadable with the tool's vLLM plugin) but not climbed by default: on SmolLM2 it measured the speed "
            "of int8-mixed (1.50× bf16) with less agreement (same top token 90.4%, `exact` −11 pts)")  # fmt: skip


INT8_RUNGS = ("int8-rtn", "int8-mixed", "int8")


def _cpu_int8(ladder: Ladder, model: str, cpu: CpuInfo, stored: bool, dtype: str) -> None:
    if not stored:
        for name in INT8_RUNGS:
            ladder.skip(name, f"{model} is not in the model store, so no quantized checkpoint can be made for it")
        return
    if not cpu.int8_dot:
        reason = "no VNNI/AMX: W8A8 int8 runs at about 0.5× bf16 on AVX2 (measured on AVX2 Xeons)"
        for name in INT8_RUNGS:
            ladder.skip(name, reason)
        return
    rung = {"dtype": dtype, "expect_log": ["CPUInt8ScaledMMLinearKernel"]}
    dot = "AMX" if cpu.has("amx_int8") else "VNNI"
    ladder.add(
        {"name": "int8-rtn", "model": f"{model}-w8a8", **rung},
        f"W8A8 int8, round-to-nearest, with {dot}: shows what calibration buys next to `int8`",
    )
    ladder.add(
        {"name": "int8-mixed", "model": f"{model}-w8a8-mixed", **rung},
        "W8A8 round-to-nearest with the 10% of GEMMs most sensitive to it kept in bf16 (mixed precision, a "
        "minute of sensitivity analysis, no calibration venv)",
        keeps_quality=True,
    )
    ladder.add(
        {"name": "int8", "model": f"{model}-w8a8-gptq", **rung},
        f"W8A8 int8 calibrated (SmoothQuant + GPTQ, llm-compressor in its own venv), with {dot}",
        keeps_quality=True,
    )


def _cpu_int4(ladder: Ladder, model: str, cpu: CpuInfo, stored: bool, dtype: str) -> None:
    if not cpu.has("avx2"):
        ladder.skip("int4", "torchao's int4 CPU kernel needs AVX2")
        return
    block = gguf_block(model)
    group = block or 64
    why = (
        f"group {group} = the block size of the shipped GGUF's 4-bit weights, so int4 lands on their grid"
        if block
        else "group 64: the largest that divides common hidden sizes (576 rules out 128)"
    )
    ladder.add(
        {
            "name": "int4",
            "model": model,
            "dtype": dtype,
            "quantization": "torchao",
            "hf_overrides": _torchao_int4(group),
        },
        f"torchao int4 weight-only (Int4CPULayout, every ISA, bf16 activations: its fast kernel), {why}",
        keeps_quality=bool(block),
    )
    if cpu.vllm_library == "_C_AVX2":
        ladder.skip("int4-gptq", "compressed-tensors W4A16 needs cpu_gemm_wna16, absent from _C_AVX2 (vLLM #55613)")
    elif block:
        ladder.skip(
            "int4-gptq", "torchao int4 already reproduces the shipped 4-bit weights; calibration can only move away"
        )
    elif stored:
        ladder.add(
            {"name": "int4-gptq", "model": f"{model}-w4a16-gptq", "dtype": dtype},
            f"W4A16 GPTQ group 32 (compressed-tensors, cpu_gemm_wna16 in {cpu.vllm_library})",
        )


def _cpu_speculation(ladder: Ladder, base: str) -> None:
    """n-gram speculation on the fastest rung expected to keep quality; lossless, so greedy identity checks it."""
    target = next((n for n in ("int4", "int8") if n in ladder.keeps_quality), base)
    rung = next(r for r in ladder.rungs if r["name"] == target)
    name = f"{target}-ngram"
    ladder.add(
        {**rung, "name": name, "speculative": NGRAM},
        f"n-gram speculation (4 tokens) on {target}: drafts copied from the prompt, wins on edit-style outputs",
    )
    ladder.skip(
        "draft-model",
        "a draft model must share the tokenizer; an int4 copy of the same 135M model measured slower (0.88×)",
    )


def gpu_ladder(model: str, gpu: GpuInfo) -> Ladder:
    ladder = Ladder([], [])
    known = KNOWN_GPU_CHECKPOINTS.get(model, {})
    base = "bf16" if gpu.bf16 else "fp16"
    ladder.add(
        {"name": base, "model": model, "dtype": "bfloat16" if gpu.bf16 else "float16"},
        f"the quality baseline ({'bf16' if gpu.bf16 else 'no bf16 before Ampere: fp16'})",
    )
    _gpu_fp8(ladder, model, gpu, known)
    _gpu_fp4(ladder, model, gpu, known)
    top = ladder.rungs[-1]
    if "eagle3" in known:
        spec = {"method": "eagle3", "model": known["eagle3"], "num_speculative_tokens": 5}
        ladder.add(
            {**top, "name": f"{top['name']}-eagle3", "speculative": spec},
            f"EAGLE3 head {known['eagle3']} on {top['name']}",
        )
    else:
        ladder.add(
            {**top, "name": f"{top['name']}-ngram", "speculative": NGRAM},
            f"no known EAGLE3 head for {model}: n-gram on {top['name']}",
        )
    return ladder


def _gpu_fp8(ladder: Ladder, model: str, gpu: GpuInfo, known: dict[str, str]) -> None:
    if not gpu.bf16:
        ladder.skip("fp8", f"{gpu.arch}: vLLM's FP8 paths need compute ≥ 8.0")
        return
    rung: dict[str, Any] = (
        {"name": "fp8", "model": known["fp8"]}
        if "fp8" in known
        else {"name": "fp8", "model": model, "quantization": "fp8"}
    )
    kind = "W8A8 on FP8 tensor cores" if gpu.fp8_w8a8 else "weight-only (FP8 Marlin): less memory, same compute"
    source = f"checkpoint {known['fp8']}" if "fp8" in known else "quantized online at load"
    ladder.add(rung, f"FP8 {kind} ({gpu.arch}), {source}")


def _gpu_fp4(ladder: Ladder, model: str, gpu: GpuInfo, known: dict[str, str]) -> None:
    if not gpu.nvfp4:
        ladder.skip("fp4", f"NVFP4 needs Blackwell or Thor (compute ≥ 10.0); this GPU is {gpu.arch}")
    elif "fp4" not in known:
        ladder.skip("fp4", f"no NVFP4 checkpoint known for {model} (vLLM cannot quantize to NVFP4 online)")
    else:
        ladder.add(
            {"name": "fp4", "model": known["fp4"], "expect_log": ["quantization=modelopt_fp4"]},
            f"NVFP4 on {gpu.arch} tensor cores, checkpoint {known['fp4']}",
        )


CPU_DEFAULTS = {"max_model_len": 2048, "env": {"VLLM_CPU_KVCACHE_SPACE": "2"}}
GPU_DEFAULTS = {"gpu_memory_utilization": 0.8, "max_model_len": 8192, "max_num_seqs": 8}


def auto_plan(model: str | None, hw: Hardware, store: ModelStore) -> Plan:
    """The plan for `model` (default: the embedded one) on this hardware; `plan.selection` says why."""
    model = model or DEFAULT_MODEL
    gpu = hw.gpu
    ladder = gpu_ladder(model, gpu) if gpu else cpu_ladder(model, hw.cpu, store)
    defaults = GPU_DEFAULTS if gpu else CPU_DEFAULTS
    raw = {
        "name": f"auto-{Path(model).name.lower()}-{gpu.arch.split()[0].lower() if gpu else hw.cpu.isa}",
        "description": f"{model} on {hw.gpu.name if gpu else hw.cpu.model}: chosen by `ladder plan auto`",
        "rungs": [{**defaults, **r} for r in ladder.rungs],
        "selection": {"hardware": hw.describe(), "choices": [c.model_dump() for c in ladder.choices]},
    }
    return parse_plan(raw, "plan auto")


__all__ = ["Choice", "Selection", "auto_plan", "cpu_baseline_reason", "cpu_ladder", "gpu_ladder"]
