"""Benchmark (NVIDIA GPU): `ladder probe`'s decode paths on a Llama-3.1-8B-shaped model with random bf16 weights
(no model hub needed; bandwidth does not care about the weights' values).

For each path — what `--decode-path auto` picks, then compiled, static and dynamic forced — prints decode tok/s,
% of the memory-bandwidth roofline (weight bytes read per token × tok/s ÷ the device's bandwidth), J/token from
NVML, the warm-up (compile and CUDA-graph capture) time and peak memory.

    PYTHONPATH=src python bench/probe_gpu.py [--shape llama-3.1-8b] [--tokens 256] [--paths auto,compiled,...]
"""

from __future__ import annotations

import argparse
import gc
import os

import torch

from llm_ladder.probe.probe import ProbeResult, probe

PROMPT = (
    "Explain, step by step and in plain words, how a large language model turns a prompt into an answer: "
    "tokenization, embeddings, attention over the context, the key-value cache, sampling the next token, and "
    "why decoding one token at a time is limited by memory bandwidth rather than arithmetic on a modern GPU."
)


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def cells(path: str, result: ProbeResult) -> list[str]:
    used = next(a for a in result.attempts if a.path == result.path)
    roof, joules = result.roofline, result.energy_j_per_token
    return [
        path,
        result.path,
        f"{result.decode_tps:.1f}",
        f"{roof.percent:.1f}" if roof else "n/a",
        f"{roof.achieved_gbs:.0f}" if roof else "n/a",
        f"{joules:.2f}" if joules is not None else "n/a",
        f"{used.warmup_s:.1f}",
        f"{result.peak_memory_gib:.1f}",
    ]


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args.add_argument("--shape", default="llama-3.1-8b")
    args.add_argument("--tokens", type=int, default=256)
    args.add_argument("--paths", default="auto,compiled,static,dynamic")
    opts = args.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    print(row(["path asked", "path used", "tok/s", "% roofline", "GB/s", "J/token", "warm-up s", "peak GiB"]))
    print(row(["---"] * 8))
    for path in opts.paths.split(","):
        result = probe(
            opts.shape, PROMPT, random_weights=True, max_new_tokens=opts.tokens, ignore_eos=True,
            device="cuda", decode_path=path,
        )  # fmt: skip
        print(row(cells(path, result)), flush=True)
        for failed in (a for a in result.attempts if a.error):
            print(f"  {failed.path} failed: {failed.error}", flush=True)
        if path == opts.paths.split(",")[0]:
            print("\n".join("  " + line for line in str(result).splitlines()), flush=True)
        del result
        gc.collect()
        torch._dynamo.reset()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
