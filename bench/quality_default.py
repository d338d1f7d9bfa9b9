"""Benchmark: the quality table of the default ladder — every rung against bf16.

Runs the default plan's rungs in eager mode (quality does not need the compile, and it saves ~3 minutes a
rung) with one short request each, the full task suites (greedy), and the prompt logprobs of the shipped
text; prints perplexity, its ratio, mean / p99 KL, the same-top share with its 95% interval, each suite's
accuracy with its interval and the paired drop against bf16, the speculative rung's greedy identity with
int4, and the recommendation under the default quality budget.

    .venv/bin/python bench/quality_default.py [--out runs/bench-quality]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llm_ladder.climb import Climber
from llm_ladder.engines.base import get_engine
from llm_ladder.models import ModelStore
from llm_ladder.plan import Workload, load_plan
from llm_ladder.results import RunDir
from llm_ladder.summary import AGREEMENT_COLUMNS, SUITE_COLUMNS, agreement_rows, suite_rows


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--out", type=Path, default=Path("runs/bench-quality"))
    opts = args.parse_args()
    console = Console()

    import llm_ladder.engines.vllm  # noqa: F401  (registers the engine)

    plan = load_plan("smollm2-cpu")
    plan = plan.model_copy(
        update={
            "trials": 1,
            "workloads": (Workload(name="short", prompt=plan.workloads[0].prompt, max_tokens=32),),
            "rungs": tuple(r.model_copy(update={"enforce_eager": True}) for r in plan.rungs),
        }
    )
    summary = Climber(plan, RunDir(opts.out), get_engine(plan.engine), ModelStore(), notify=console.print).run()

    table = Table(*AGREEMENT_COLUMNS, title="default ladder against bf16 (prompt logprobs, top-10)")
    for row in agreement_rows(summary):
        table.add_row(*row)
    console.print(table)
    table = Table(*SUITE_COLUMNS, title="task suites (greedy), paired against bf16")
    for row in suite_rows(summary):
        table.add_row(*row)
    console.print(table)
    for r in summary.rungs:
        if (ident := r.greedy_identity) is not None:
            console.print(f"{r.name}: {ident.identical}/{ident.compared} greedy answers identical to {ident.reference}")
            console.print(f"  differing (item@first differing token): {', '.join(ident.differing) or 'none'}")
    if summary.recommendation:
        console.print(f"recommendation: {summary.recommendation.summary}")
    console.print(f"full results: {opts.out / 'summary.md'}")


if __name__ == "__main__":
    main()
