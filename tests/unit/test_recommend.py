from llm_ladder.measure.metrics import Spread, WorkloadStats
from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.plan.schema import QualityBudget
from llm_ladder.quality.agreement import Agreement
from llm_ladder.quality.recommend import recommend
from llm_ladder.quality.suites import Identity, Paired, SuiteScore, mcnemar_p


def _rung(name, tps, spread=0.5, agreement=None, status="ok"):
    s = Spread(median=tps, min=tps - spread, max=tps + spread, n=3)
    stats = WorkloadStats(
        requests=3,
        errors=0,
        ttft_ms=s,
        decode_tps=s,
        e2e_tps=s,
        itl_p50_ms=1,
        itl_p95_ms=2,
        prompt_tokens=9,
        completion_tokens=s,
        repetition=None,
        degenerate=False,
    )
    return RungResult(
        name=name,
        status=status,
        model="m",
        config={},
        workloads={"long": stats, "short": stats},
        agreement=agreement,
        error=None if status == "ok" else "boom",
    )


def _agree(ratio=1.01, kl=0.01, same=0.95, n=2000):
    return Agreement(tokens=n, perplexity=10 * ratio, baseline_perplexity=10, mean_kl=kl, p99_kl=kl * 5, same_top=same)


def _summary(*rungs):
    return RunSummary(plan="p", started_at="t", baseline=rungs[0].name, rungs=list(rungs))


def test_fastest_rung_inside_the_budget_wins_with_reasons_for_the_others():
    summary = _summary(
        _rung("bf16", 10, agreement=_agree(1, 0, 1)),
        _rung("int8", 14, agreement=_agree()),
        _rung("int4", 20, agreement=_agree(ratio=1.37, kl=0.13, same=0.695)),
        _rung("broken", 0, status="failed"),
        _rung("unmeasured", 30),
    )
    rec = recommend(summary, QualityBudget(), "decode_tps_long")
    assert rec.rung == "int8" and rec.summary.startswith("deploy int8: best decode_tps_long (14.0)")
    verdicts = {v.rung: v for v in rec.verdicts}
    assert verdicts["bf16"].accepted and verdicts["int8"].accepted
    int4 = " ".join(verdicts["int4"].reasons)
    assert "perplexity ratio 1.370 is outside" in int4 and "mean KL 0.1300 is outside" in int4
    assert "same top token 69.5%" in int4 and "n=2000" in int4
    assert verdicts["broken"].reasons == ["failed: boom"]
    assert verdicts["unmeasured"].reasons == ["no quality measurement against the baseline"]


def test_overlapping_trials_are_called_indistinguishable():
    summary = _summary(_rung("bf16", 10, spread=1), _rung("int8", 10.5, spread=1, agreement=_agree()))
    rec = recommend(summary, QualityBudget(), "decode_tps_long")
    assert rec.rung == "int8" and rec.indistinguishable == ["bf16"]
    assert "not distinguishable from bf16" in rec.summary


def test_lower_is_better_for_ttft_and_budget_is_configurable():
    summary = _summary(_rung("bf16", 300), _rung("int4", 100, agreement=_agree(ratio=1.2)))
    assert recommend(summary, QualityBudget(), "ttft_ms").rung == "bf16"
    loose = QualityBudget(max_perplexity_ratio=1.5)
    assert recommend(summary, loose, "ttft_ms").rung == "int4"


def test_nothing_measured_means_no_recommendation():
    rec = recommend(_summary(_rung("bf16", 0, status="failed")), QualityBudget(), "decode_tps_long")
    assert rec.rung is None and rec.summary == "no rung is inside the quality budget"


def test_answers_the_model_would_not_write_reject_a_rung():
    base, spec = _rung("bf16", 10), _rung("int4-spec", 20, agreement=_agree())
    base.workloads["short"] = base.workloads["short"].model_copy(
        update={"output_perplexity": Spread(median=6.7, min=6, max=7, n=3)}
    )
    spec.workloads["short"] = spec.workloads["short"].model_copy(
        update={"output_perplexity": Spread(median=177.7, min=150, max=200, n=3)}
    )
    rec = recommend(_summary(base, spec), QualityBudget(), "decode_tps_long")
    assert rec.rung == "bf16"
    reasons = next(v for v in rec.verdicts if v.rung == "int4-spec").reasons
    assert reasons == ["`short` answers' perplexity 26.5× the baseline's is outside the budget (≤ 4.0×)"]


def test_accepted_rungs_without_the_objective_are_said_so():
    rung = _rung("bf16", 10)
    rung.workloads.pop("long")
    rec = recommend(_summary(rung), QualityBudget(), "decode_tps_long")
    assert rec.rung is None and rec.summary == "no rung inside the quality budget has a decode_tps_long measurement"


def _suite(passed, n=40, lost=0, gained=0):
    drop = 100 * (lost - gained) / n
    vs = Paired(baseline_accuracy=0.5, drop_points=drop, lost=lost, gained=gained, p_value=mcnemar_p(lost, gained))
    return SuiteScore(suite="exact", n=n, passed=passed, vs_baseline=vs if lost or gained else None)


def test_accuracy_drop_beyond_the_budget_rejects_a_rung_with_its_evidence():
    base = _rung("bf16", 10)
    base.suites = {"exact": _suite(20)}
    small, large = _rung("int8", 14, agreement=_agree()), _rung("int4", 20, agreement=_agree())
    small.suites = {"exact": _suite(19, lost=2, gained=1)}
    large.suites = {"exact": _suite(12, lost=9, gained=1)}
    rec = recommend(_summary(base, small, large), QualityBudget(), "decode_tps_long")
    assert rec.rung == "int8"
    verdicts = {v.rung: v for v in rec.verdicts}
    assert "`exact` accuracy 47.5% (95% CI 33%–63%, n=40), drop 2.5 pts vs the baseline (McNemar p=1.00) ≤ 10 pts" in (
        verdicts["int8"].reasons
    )
    assert verdicts["int4"].reasons == [
        "`exact` accuracy 30.0% (95% CI 18%–45%, n=40), drop 20.0 pts vs the baseline (McNemar p=0.02) "
        "is outside the budget (≤ 10 pts)"
    ]


def test_a_rung_without_suite_results_is_not_recommended_when_the_baseline_has_them():
    base, rung = _rung("bf16", 10), _rung("int4", 20, agreement=_agree())
    base.suites = {"exact": _suite(20)}
    rec = recommend(_summary(base, rung), QualityBudget(), "decode_tps_long")
    assert rec.rung == "bf16" and rec.verdicts[1].reasons == ["no task-suite results (the baseline has them)"]


def test_greedy_identity_below_the_budget_rejects_a_speculative_rung():
    base, spec = _rung("int4", 10), _rung("int4-spec", 20, agreement=_agree())
    spec.greedy_identity = Identity(reference="int4", compared=88, identical=70)
    rec = recommend(_summary(base, spec), QualityBudget(), "decode_tps_long")
    assert rec.verdicts[1].reasons == ["greedy answers identical to int4's 79.5% (70/88) is outside the budget (≥ 90%)"]
    spec.greedy_identity = Identity(reference="int4", compared=88, identical=87)
    assert recommend(_summary(base, spec), QualityBudget(), "decode_tps_long").rung == "int4-spec"


def test_task_suites_alone_are_a_quality_measurement():
    base, rung = _rung("bf16", 10), _rung("int4", 20)  # agreement disabled in the plan
    base.suites, rung.suites = {"exact": _suite(20)}, {"exact": _suite(20, lost=1, gained=1)}
    rec = recommend(_summary(base, rung), QualityBudget(), "decode_tps_long")
    assert rec.rung == "int4" and rec.verdicts[1].reasons[0].startswith("`exact` accuracy 50.0%")


def test_each_workload_names_its_fastest_rung_inside_the_budget():
    spec = _rung("int8-ngram", 12, agreement=_agree())
    spec.workloads["edit"] = _rung("x", 40).workloads["long"]
    int8 = _rung("int8", 14, agreement=_agree())
    int8.workloads["edit"] = _rung("x", 15).workloads["long"]
    bad = _rung("int4", 50, agreement=_agree(kl=0.2))
    summary = _summary(_rung("bf16", 10, agreement=_agree(1, 0, 1)), int8, spec, bad)
    summary.recommendation = rec = recommend(summary, QualityBudget(), "decode_tps_long")
    assert rec.rung == "int8" and rec.per_workload == {"long": "int8", "short": "int8", "edit": "int8-ngram"}
    from llm_ladder.outputs.summary import per_workload_line

    assert "edit **int8-ngram** (40.0 tok/s, 2.67× int8)" in per_workload_line(summary)


def test_ttft_is_judged_on_the_short_workload_and_a_plan_without_one_is_refused():
    import pytest

    from llm_ladder.plan.loading import parse_plan
    from llm_ladder.plan.schema import PlanError

    fast_first_token = _rung("int4", 30, agreement=_agree())
    fast_first_token.workloads["short"] = _rung("x", 5).workloads["short"]  # 5 ms on short, 30 on long
    slow = _rung("bf16", 10)
    slow.workloads["short"] = _rung("x", 50).workloads["short"]
    slow.workloads = {"long": slow.workloads["long"], "short": slow.workloads["short"]}  # long listed first
    assert recommend(_summary(slow, fast_first_token), QualityBudget(), "ttft_ms").rung == "int4"
    with pytest.raises(PlanError, match="objective 'ttft_ms' needs a workload named 'short'"):
        parse_plan({"name": "p", "objective": "ttft_ms", "workloads": [{"name": "long", "prompt": "x", "max_tokens": 8}],
                    "rungs": [{"name": "a", "model": "m"}]})  # fmt: skip
