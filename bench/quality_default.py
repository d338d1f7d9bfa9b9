"""Benchmark: the quality table of the default ladder — every rung against bf16.

Runs `ladder climb` on the default plan exactly as shipped, with one trial per workload (quality does not need
speed trials), then prints from its results.json: perplexity, its ratio, mean / p99 KL and the same-top share
with its 95% interval; each task suite's accuracy with its interval and the paired drop against bf16; the
speculative rung's greedy identity with int4; and the recommendation under the default quality budget.

    .venv/bin/python bench/quality_default.py [--out runs/bench-quality] [--trials 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llm_ladder.outputs.quality_tables import AGREEMENT_COLUMNS, SUITE_COLUMNS, agreement_rows, suite_rows
from llm_ladder.outputs.results import RunSummary


def print_quality(summary: RunSummary, console: Console) -> None:
    for title, columns, rows in (
        ("agreement with bf16 (prompt logprobs, top-10)", AGREEMENT_COLUMNS, agreement_rows(summary)),
        ("task suites (greedy), paired against bf16", SUITE_COLUMNS, suite_rows(summary)),
    ):
        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for r in summary.rungs:
        if (ident := r.greedy_identity) is not None:
            console.print(f"{r.name}: {ident.identical}/{ident.compared} greedy answers identical to {ident.reference}")
            console.print(f"  differing (item@first differing token): {', '.join(ident.differing) or 'none'}")
    if summary.recommendation:
        console.print(f"recommendation: {summary.recommendation.summary}")
        for v in summary.recommendation.verdicts:
            console.print(f"  {v.rung}: {'inside' if v.accepted else 'rejected'}: {'; '.join(v.reasons)}")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--out", type=Path, default=Path("runs/bench-quality"))
    args.add_argument("--trials", type=int, default=1)
    opts = args.parse_args()
    cmd = [sys.executable, "-m", "llm_ladder", "climb", "--trials", str(opts.trials), "--out", str(opts.out)]
    climb = subprocess.run(cmd, check=False)
    results = opts.out / "results.json"
    if not results.exists():
        sys.exit(f"the climb wrote no {results} (exit code {climb.returncode})")
    console = Console()
    print_quality(RunSummary.model_validate_json(results.read_text()), console)
    console.print(f"full results: {opts.out / 'summary.md'} (climb exit code {climb.returncode})")


if __name__ == "__main__":
    main()
