"""Benchmark: vLLM CPU against llama.cpp on this machine, one run, the same model and workload.

Rungs: vLLM bf16 / int8-mixed (W8A8, sensitive GEMMs in bf16) / int4 (torchao) and llama.cpp F16 / Q8_0 /
Q4_K_M / Q4_K_M + n-gram, all SmolLM2-135M-Instruct from the store. Workload: the ladder's long prompt, 512
sampled tokens (temperature 0.7), `--trials` requests (default 3). Per rung: decode tok/s median with min–max,
threads, mean KL and same-top share against vLLM bf16 (llama.cpp rungs: llama-perplexity against the F16 GGUF of
the same weights), and the verdict under the default quality budget. The header names the ISA and cores the
numbers come from.

    .venv/bin/python bench/engines_cpu.py [--trials 3] [--out runs/bench-engines]
    .venv/bin/python bench/engines_cpu.py --run runs/<dir>      # the table of an earlier run
"""

from __future__ import annotations

import os

from bench_cli import run_dir
from rich.console import Console
from rich.table import Table

from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.plan.hardware import detect
from llm_ladder.plan.loading import load_plan
from llm_ladder.plan.workshop import LONG_PROMPT

COLUMNS = ("rung", "engine", "tok/s (min–max)", "× vLLM bf16", "threads", "mean KL", "same top", "verdict")
VLLM_RUNGS = ("bf16", "int8-mixed", "int4")


def plan(trials: int) -> dict:
    """vLLM's rungs from the AMX default plan and every llama.cpp rung of the engines plan, one workload."""
    cpu, engines = load_plan("smollm2-cpu"), load_plan("smollm2-cpu-engines")
    vllm = [r.model_dump(exclude_defaults=True) | {"engine": "vllm"} for r in cpu.rungs if r.name in VLLM_RUNGS]
    llama = [r.model_dump(exclude_defaults=True) for r in engines.rungs if r.engine == "llama.cpp"]
    return {
        "name": "bench-engines-cpu",
        "engine": "vllm",
        "trials": trials,
        "workloads": [{"name": "long", "prompt": LONG_PROMPT, "max_tokens": 512, "min_tokens": 512}],
        "suites": {"enabled": False},
        "rungs": [r | {"max_model_len": 2048} if r["engine"] == "vllm" else r for r in vllm] + llama,
    }


def _threads(r: RungResult) -> str:
    if "-t" in r.command:
        return r.command[r.command.index("-t") + 1]
    return r.config.get("env", {}).get("VLLM_CPU_OMP_THREADS_BIND", str(len(os.sched_getaffinity(0))))


def row(r: RungResult, summary: RunSummary) -> list[str]:
    base = next(x for x in summary.rungs if x.name == summary.baseline).decode_tps("long")
    stats = r.workloads.get("long")
    spread = stats.decode_tps if stats else None
    verdict = next((v for v in summary.recommendation.verdicts if v.rung == r.name), None)
    return [
        r.name,
        r.engine or summary.engine,
        f"{spread.median:.1f} ({spread.min:.1f}–{spread.max:.1f})" if spread and spread.median else "–",
        f"{r.decode_tps('long') / base:.2f}×" if base and r.decode_tps("long") else "–",
        _threads(r),
        f"{r.agreement.mean_kl:.4f}" if r.agreement else "–",
        f"{r.agreement.same_top:.1%}" if r.agreement else "–",
        ("inside" if verdict.accepted else "rejected") if verdict else r.status,
    ]


def main() -> None:
    run = run_dir(__doc__, "runs/bench-engines", make_plan=plan)
    summary = RunSummary.model_validate_json((run / "results.json").read_text())
    cpu = detect().cpu
    table = Table(*COLUMNS, title=f"vLLM CPU vs llama.cpp: {cpu.isa} ({cpu.vllm_library}), {cpu.cores} cores")
    for r in summary.rungs:
        table.add_row(*row(r, summary))
    console = Console(width=160)
    console.print(table)
    if summary.recommendation:
        console.print(f"recommendation: {summary.recommendation.summary}", soft_wrap=True)


if __name__ == "__main__":
    main()
