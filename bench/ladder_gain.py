"""Benchmark: does the ladder pay off on this machine? One table from a climb of the plan `ladder plan auto` picks.

Per rung: decode tok/s on the long and the edit workloads, each as a ratio to the baseline, speculative
acceptance on edit, the ratio of a speculative rung to its target rung on edit, mean KL, same-top share, greedy
identity, and the verdict under the default quality budget; then the recommendation. The header names the ISA
and core count the numbers come from.

    .venv/bin/python bench/ladder_gain.py [--trials 3] [--out runs/bench-gain]   # climbs (README command 1)
    .venv/bin/python bench/ladder_gain.py --run runs/<dir>                       # the table of an earlier climb
"""

from __future__ import annotations

from bench_cli import run_dir
from rich.console import Console
from rich.table import Table

from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.plan.hardware import detect

COLUMNS = ("rung", "tok/s long", "× base", "tok/s edit", "× base", "edit acceptance", "× target (edit)",
           "mean KL", "same top", "greedy identity", "verdict")  # fmt: skip


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "–"


def _tps(r: RungResult, workload: str) -> str:
    tps = r.decode_tps(workload)
    return f"{tps:.1f}" if tps else "–"


def row(r: RungResult, summary: RunSummary) -> list[str]:
    by_name = {x.name: x for x in summary.rungs}
    base = by_name[summary.baseline]
    target = by_name.get(r.greedy_identity.reference) if r.greedy_identity else None
    spec = r.spec.get("edit")
    verdict = next((v for v in summary.recommendation.verdicts if v.rung == r.name), None)
    return [
        r.name,
        _tps(r, "long"),
        _ratio(r.decode_tps("long"), base.decode_tps("long")),
        _tps(r, "edit"),
        _ratio(r.decode_tps("edit"), base.decode_tps("edit")),
        f"{spec.acceptance_rate:.0%}" if spec and spec.acceptance_rate is not None else "–",
        _ratio(r.decode_tps("edit"), target.decode_tps("edit")) if target else "–",
        f"{r.agreement.mean_kl:.4f}" if r.agreement else "–",
        f"{r.agreement.same_top:.1%}" if r.agreement else "–",
        f"{r.greedy_identity.match:.0%}" if r.greedy_identity else "–",
        ("inside" if verdict.accepted else "rejected") if verdict else r.status,
    ]


def print_gain(summary: RunSummary, console: Console) -> None:
    cpu = detect().cpu
    table = Table(*COLUMNS, title=f"{summary.plan}: {cpu.isa} ({cpu.vllm_library}), {cpu.cores} cores")
    for r in summary.rungs:
        table.add_row(*row(r, summary))
    console.print(table)
    if summary.recommendation:
        console.print(f"recommendation: {summary.recommendation.summary}", soft_wrap=True)
        console.print(f"per workload: {summary.recommendation.per_workload}")


def main() -> None:
    run = run_dir(__doc__, "runs/bench-gain")
    print_gain(RunSummary.model_validate_json((run / "results.json").read_text()), Console(width=200))


if __name__ == "__main__":
    main()
