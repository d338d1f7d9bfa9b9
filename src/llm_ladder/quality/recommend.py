"""The quality-first choice: the best rung by the plan's objective among those whose quality holds.

Quality is judged against the baseline rung (agreement from prompt logprobs); a rung without a quality
measurement is not recommended, since quality-first means evidence first. Speed differences count only
where the trials' ranges do not overlap.
"""

from __future__ import annotations

from llm_ladder.measure.metrics import Spread
from llm_ladder.outputs.results import Recommendation, RungResult, RunSummary, Verdict
from llm_ladder.plan.schema import Objective, QualityBudget, objective_workload
from llm_ladder.quality.agreement import Agreement


def _objective_spread(result: RungResult, objective: Objective) -> Spread | None:
    stats = result.workloads.get(objective_workload(objective))
    if stats is None:
        return None
    return stats.decode_tps if objective.startswith("decode_tps") else stats.ttft_ms


def _better(a: float, b: float, objective: Objective) -> bool:
    return a > b if objective.startswith("decode_tps") else a < b


def output_perplexity_ratios(result: RungResult, baseline: RungResult | None) -> dict[str, float]:
    """Per workload: median perplexity of the rung's answers ÷ the baseline's."""
    ratios = {}
    for name, stats in result.workloads.items():
        base = baseline.workloads.get(name) if baseline else None
        if stats.output_perplexity and base and base.output_perplexity:
            ratios[name] = stats.output_perplexity.median / base.output_perplexity.median
    return ratios


Check = tuple[bool, str, str, str]
"""(inside the budget, what was measured, operator, limit)."""


def suite_checks(result: RungResult, baseline: RungResult | None, budget: QualityBudget) -> list[Check]:
    """Accuracy drop per task suite against the baseline; greedy identity for speculative rungs."""
    checks: list[Check] = []
    if baseline is not None and baseline.suites and not result.suites:
        checks.append((False, "no task-suite results (the baseline has them)", "", ""))
    for name, score in result.suites.items():
        if (p := score.vs_baseline) is None:
            continue
        lo, hi = score.ci95
        what = (
            f"`{name}` accuracy {score.accuracy:.1%} (95% CI {lo:.0%}–{hi:.0%}, n={score.n}), "
            f"drop {p.drop_points:.1f} pts vs the baseline (McNemar p={p.p_value:.2f})"
        )
        checks.append((p.drop_points <= budget.max_accuracy_drop, what, "≤", f"{budget.max_accuracy_drop:g} pts"))
    if (ident := result.greedy_identity) is not None:
        what = f"greedy answers identical to {ident.reference}'s {ident.match:.1%} ({ident.identical}/{ident.compared})"
        checks.append((ident.match >= budget.min_greedy_identity, what, "≥", f"{budget.min_greedy_identity:.0%}"))
    return checks


def agreement_checks(a: Agreement, budget: QualityBudget) -> list[Check]:
    lo, hi = a.same_top_ci95
    return [
        (
            a.perplexity_ratio <= budget.max_perplexity_ratio,
            f"perplexity ratio {a.perplexity_ratio:.3f}",
            "≤",
            f"{budget.max_perplexity_ratio}",
        ),
        (a.mean_kl <= budget.max_mean_kl, f"mean KL {a.mean_kl:.4f}", "≤", f"{budget.max_mean_kl}"),
        (
            a.same_top >= budget.min_same_top,
            f"same top token {a.same_top:.1%} (95% CI {lo:.1%}–{hi:.1%}, n={a.tokens})",
            "≥",
            f"{budget.min_same_top:.0%}",
        ),
    ]


def output_checks(result: RungResult, baseline: RungResult | None, budget: QualityBudget) -> list[Check]:
    return [
        (
            ratio <= budget.max_output_perplexity_ratio,
            f"`{name}` answers' perplexity {ratio:.1f}× the baseline's",
            "≤",
            f"{budget.max_output_perplexity_ratio}×",
        )
        for name, ratio in output_perplexity_ratios(result, baseline).items()
    ]


def judge(result: RungResult, baseline: RungResult | None, budget: QualityBudget) -> Verdict:
    """Inside or outside the quality budget, with the reasons: every quality measurement the rung has against
    the baseline must be inside it, and it must have at least one."""
    if result.status != "ok":
        return Verdict(rung=result.name, accepted=False, reasons=[f"failed: {result.error}"])
    if baseline is not None and result.name == baseline.name:
        return Verdict(rung=result.name, accepted=True, reasons=["the quality baseline"])
    checks = agreement_checks(result.agreement, budget) if result.agreement else []
    checks += output_checks(result, baseline, budget) + suite_checks(result, baseline, budget)
    if not checks:
        return Verdict(rung=result.name, accepted=False, reasons=["no quality measurement against the baseline"])
    failed = [
        f"{what} is outside the budget ({op} {limit})" if op else what for ok, what, op, limit in checks if not ok
    ]
    if failed:
        return Verdict(rung=result.name, accepted=False, reasons=failed)
    unmeasured = [f"{what}: n/a ({why})" for what, why in result.not_measured.items() if what != "startup stages"]
    passed = [f"{what} {op} {limit}" for _, what, op, limit in checks]
    return Verdict(rung=result.name, accepted=True, reasons=passed + unmeasured)


def per_workload_winners(summary: RunSummary, accepted: set[str]) -> dict[str, str]:
    """Per workload, the accepted rung with the best median decode tok/s."""
    rungs = [r for r in summary.rungs if r.name in accepted]
    winners = {}
    for workload in dict.fromkeys(w for r in rungs for w in r.workloads):
        best = max(rungs, key=lambda r: r.decode_tps(workload) or 0)
        if best.decode_tps(workload):
            winners[workload] = best.name
    return winners


def recommend(summary: RunSummary, budget: QualityBudget, objective: Objective) -> Recommendation:
    rec = _recommend(summary, budget, objective)
    rec.per_workload = per_workload_winners(summary, {v.rung for v in rec.verdicts if v.accepted})
    return rec


def _recommend(summary: RunSummary, budget: QualityBudget, objective: Objective) -> Recommendation:
    by_name = {r.name: r for r in summary.rungs}
    baseline = by_name.get(summary.baseline)
    verdicts = [judge(r, baseline, budget) for r in summary.rungs]
    scored = [
        (v.rung, spread)
        for v in verdicts
        if v.accepted and (spread := _objective_spread(by_name[v.rung], objective)) is not None
    ]
    if not scored:
        text = "no rung is inside the quality budget"
        if any(v.accepted for v in verdicts):
            text = f"no rung inside the quality budget has a {objective} measurement"
        return Recommendation(objective=objective, rung=None, summary=text, verdicts=verdicts)
    best, best_spread = scored[0]
    for name, spread in scored[1:]:
        if _better(spread.median, best_spread.median, objective):
            best, best_spread = name, spread
    ties = [n for n, s in scored if n != best and s.min <= best_spread.max and best_spread.min <= s.max]
    text = f"deploy {best}: best {objective} ({best_spread.median:.1f}) among rungs inside the quality budget"
    if ties:
        text += f"; not distinguishable from {', '.join(ties)} (trial ranges overlap)"
    return Recommendation(objective=objective, rung=best, summary=text, verdicts=verdicts, indistinguishable=ties)
