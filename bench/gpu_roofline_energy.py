"""Benchmark (NVIDIA GPU): the roofline and energy paths of `ladder climb` on a real GPU, without vLLM.

Prints: the GPU NVML names and the datasheet bandwidth `roofline.host_bandwidth()` picks for it; a measured
device-to-device copy bandwidth to check that figure against; then batch-1 greedy decoding of a model shaped
like Llama-3.1-8B-Instruct (the probe's shipped shape; random bf16 weights: bandwidth does not care about
their values; no download) with Hugging Face transformers, and for it tok/s, the roofline
(`roofline.roofline`, same arithmetic as a climb) and joules per output token from NVML
(`energy.open_energy_source`).

    python bench/gpu_roofline_energy.py [--tokens 128] [--layers 32]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llm_ladder.measure.energy import open_energy_source
from llm_ladder.measure.roofline import host_bandwidth, kv_bytes_per_token, measure_gpu_bandwidth, roofline
from llm_ladder.probe.source import SHAPES_DIR


def decode(model: LlamaForCausalLM, prompt_len: int, tokens: int) -> float:
    ids = torch.randint(0, 1000, (1, prompt_len), device="cuda")
    kwargs = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False}
    model.generate(ids, **(kwargs | {"max_new_tokens": 8, "min_new_tokens": 8}))  # warm up
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(ids, **kwargs)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args.add_argument("--tokens", type=int, default=128)
    args.add_argument("--prompt", type=int, default=128)
    args.add_argument("--layers", type=int, default=32)
    opts = args.parse_args()
    bandwidth = host_bandwidth()
    name = torch.cuda.get_device_name(0)
    print(f"GPU: {name}; bandwidth for the roofline: {bandwidth.gbs:.0f} GB/s ({bandwidth.source})")
    print(f"measured device copy: {measure_gpu_bandwidth(4).gbs:.0f} GB/s")
    shape = json.loads((SHAPES_DIR / "llama-3.1-8b.json").read_text())
    config = LlamaConfig(**(shape | {"num_hidden_layers": opts.layers}))
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    energy = open_energy_source()
    print(f"weights: {weights / 2**30:.2f} GiB; energy source: {energy.name if energy else 'none'}")
    before = energy.joules() if energy else None
    seconds = decode(model, opts.prompt, opts.tokens)
    joules = energy.joules() - before if energy and before is not None else None
    tps = opts.tokens / seconds
    kv = kv_bytes_per_token(config.to_dict())
    roof = roofline("decode", weights, kv, opts.prompt + opts.tokens / 2, tps, bandwidth)
    per_token = f"{joules / opts.tokens:.2f} J/token" if joules is not None else "n/a"
    print(
        f"HF transformers eager decode, batch 1: {tps:.1f} tok/s; {roof.achieved_gbs:.0f} GB/s = "
        f"{roof.percent:.1f}% of {bandwidth.gbs:.0f} GB/s; energy {per_token} (whole GPU, idle draw included)"
    )


if __name__ == "__main__":
    main()
