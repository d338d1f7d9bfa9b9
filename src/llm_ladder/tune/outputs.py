"""What a tune leaves: tune.json (every trial), tune.md, the report's tune section (every trial's speed against its
quality with the budget drawn, the Pareto front, the winner), and the winner as a plan rung (`--write-plan`)."""

from __future__ import annotations

from pathlib import Path

from llm_ladder.outputs.markdown import md_cell, md_table
from llm_ladder.outputs.results import Recommendation, RungResult, RunSummary, Verdict
from llm_ladder.plan.loading import plan_yaml
from llm_ladder.plan.schema import Plan, Rung
from llm_ladder.tune.result import UNITS, TuneResult, describe, measured_trials, searched
from llm_ladder.tune.space import SearchSpace
from llm_ladder.tune.trials import TrialRecord

TRIAL_COLUMNS = ("trial", "kind", "config", "score", "repeats", "quality", "feasible / why not", "start s", "wall s")
SCORES = {
    "decode_tps_long": "median − 1.4826 × MAD (× the space's spread_penalty) of the decode rates of each trial's "
    "repeats, pooled with its confirm runs'",
    "ttft_p99": "p99 of the time to first token over each trial's requests, pooled with its confirm runs'",
    "goodput": "the load sweep's best level (requests/s meeting the SLOs), pooled with its confirm runs'",
}


def _quality_cell(r: TrialRecord) -> str:
    q = r.quality
    if q is None:
        return "—"
    top = f", same top {q.same_top:.1%}" if q.same_top is not None else ""
    return f"{'in' if q.accepted else 'OUT'} (trial {q.measured_in}{top})"


def trial_rows(result: TuneResult) -> list[list[str]]:
    rows = []
    for r in result.trials:
        m = r.measured
        kind = (
            r.kind + (f" of {r.seed_of}" if r.seed_of else "") + (f" of {r.confirms}" if r.confirms is not None else "")
        )
        kind += f" (= trial {r.same_as})" if r.same_as is not None else ""
        label = f"c{r.number}" if r.kind == "confirm" else str(r.number)
        rows.append(
            [
                label + (" ★" if r.kind != "confirm" and r.number == result.winner else ""),
                kind,
                describe(r.params),
                f"{r.score:.1f}" if r.score is not None else "—",
                ", ".join(f"{v:.1f}" for v in m.values) if m else "cached",
                _quality_cell(r),
                "yes" if r.feasible else "; ".join(r.why_not),
                f"{m.startup_s:.0f}" if m and m.startup_s else "—",
                f"{m.wall_s:.0f}" if m else "0",
            ]
        )
    return rows


def to_markdown(result: TuneResult, plan: Plan) -> str:
    unit = UNITS[result.objective]
    slo = ", ".join(f"{k} p99 ≤ {v:g} ms" for k, v in result.slo.items()) or "none"
    confirms = sum(1 for t in result.trials if t.kind == "confirm")
    lines = [
        f"# Tune of `{plan.name}`" + (" (interrupted)" if result.interrupted else ""),
        "",
        f"**Result:** {result.summary}",
        "",
        f"- objective: {result.objective} ({unit}); score = {SCORES[result.objective]}",
        f"- quality budget: the plan's, against its baseline `{plan.baseline.name}`; SLOs: {slo}",
        f"- trials: {len(measured_trials(result.trials))} measured of a budget of {result.budget} (plan rungs: "
        f"{result.seeds_measured} of {result.seeds_total}), {confirms} confirm runs; {result.trial_s / 60:.1f} min "
        f"in trials; space: {result.space}",
        "",
        *md_table(TRIAL_COLUMNS, [[md_cell(c) for c in row] for row in trial_rows(result)]),
        "",
        "★ the recommended trial. Quality is measured once per output-affecting combination (base rung, output "
        "knobs, speculation) and reused by its speed-only variants; `cached` rows started no engine. Confirm runs "
        "(c0, c1, ...) measure a trial again on a fresh server.",
    ]
    return "\n".join(lines) + "\n"


def winner_rung(search: SearchSpace, result: TuneResult, name: str = "tuned") -> Rung | None:
    """The recommended trial's config as a plan rung (the plan's model names, not resolved paths)."""
    if result.winner is None:
        return None
    record = next(r for r in searched(result.trials) if r.number == result.winner)
    return search.rung(record.params, name)


def plan_with(plan: Plan, rung: Rung) -> str:
    """The plan with the winner appended as a rung, so climb / serve / deploy take it as it is."""
    rungs = (*(r for r in plan.rungs if r.name != rung.name), rung)
    return plan_yaml(plan.model_copy(update={"rungs": rungs}))


def run_summary(plan: Plan, result: TuneResult, rungs: dict[str, RungResult], started_at: str) -> RunSummary:
    """The tune's run directory as a climb's results.json: one rung per measured trial, the winner as the
    recommendation, so `ladder report`, `compare`, `serve` and `deploy` read it unchanged."""
    by_rung = {r.measured.rung: r for r in searched(result.trials) if r.measured and r.measured.rung in rungs}
    verdicts = [
        Verdict(rung=name, accepted=t.feasible, reasons=t.why_not or (t.quality.reasons if t.quality else []))
        for name, t in by_rung.items()
    ]
    winner = next((name for name, t in by_rung.items() if t.number == result.winner), None)
    return RunSummary(
        plan=f"tune-{plan.name}",
        engine=plan.engine,
        started_at=started_at,
        baseline=plan.baseline.name,
        rungs=[rungs[name] for name in by_rung],
        quality_budget=plan.quality_budget.model_dump(),
        recommendation=Recommendation(
            objective=result.objective, rung=winner, summary=result.summary, verdicts=verdicts
        ),
    )


def tune_chart(result: TuneResult, min_same_top: float) -> str | None:
    """Every measured trial: its score against its combination's agreement (same top token), the budget's line,
    the Pareto front, the winner in red, infeasible trials grey."""
    from llm_ladder.outputs.charts import HIGHLIGHT, NORMAL, _front, _svg, plt

    points = [
        (r, r.score, 100 * r.quality.same_top)
        for r in result.trials
        if r.kind != "confirm" and r.score is not None and r.quality and r.quality.same_top is not None
    ]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for r, x, y in points:
        won = r.number == result.winner
        colour = HIGHLIGHT if won else (NORMAL if r.feasible else "#999999")
        ax.scatter([x], [y], color=colour, s=80 if won else 30, zorder=3)
        ax.annotate(str(r.number), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    sign = 1 if result.objective != "ttft_p99" else -1  # for TTFT the front's "better" is lower
    front = [(sign * x, y) for x, y in _front([(sign * x, y) for r, x, y in points if r.feasible])]
    if front:
        ax.plot(*zip(*front, strict=True), linestyle="--", color="#888888", zorder=2, label="Pareto front (feasible)")
    ax.axhline(100 * min_same_top, color=HIGHLIGHT, linestyle=":", label=f"budget: same top ≥ {min_same_top:.0%}")
    ax.set_xlabel(f"score, {result.objective} ({UNITS[result.objective]})")
    ax.set_ylabel("same top token as the baseline, %")
    ax.set_title("Tune: every trial (red: recommended, grey: infeasible)")
    ax.legend(fontsize=7)
    return _svg(fig)


def write_outputs(out: Path, result: TuneResult, plan: Plan) -> None:
    (out / "tune.json").write_text(result.model_dump_json(indent=2))
    (out / "tune.md").write_text(to_markdown(result, plan))


def load_result(out: Path) -> TuneResult | None:
    path = out / "tune.json"
    return TuneResult.model_validate_json(path.read_text()) if path.is_file() else None
