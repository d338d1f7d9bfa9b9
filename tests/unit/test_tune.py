"""`ladder tune`: the search on a synthetic surface (optimum found, constraints kept, quality cached, resume), the
space's validation, and the command end to end on the fake engine."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.plan.loading import load_plan
from llm_ladder.plan.schema import LoadSpec, PlanError
from llm_ladder.testing.synthetic_tune import (
    BASE,
    KV,
    SEQS,
    SPEC,
    TOKENS,
    SyntheticEvaluator,
    inside_budget,
    synthetic_plan,
    synthetic_space,
    true_speed,
)
from llm_ladder.tune.run import parse_slo
from llm_ladder.tune.space import SearchSpace, Space, SpaceError, load_space
from llm_ladder.tune.study import TuneOptions, Tuner
from llm_ladder.tune.trials import Measured, robust_score

runner = CliRunner()


def _all_configs():
    for base in BASE:
        for spec in SPEC:
            for kv in KV:
                for seqs in SEQS:
                    for tokens in TOKENS:
                        yield {"base": base, "speculative": spec, "output.kv_cache_dtype": kv,
                               "speed.max_num_seqs": seqs, "speed.max_num_batched_tokens": tokens}  # fmt: skip


OPTIMUM = max(true_speed(p) for p in _all_configs() if inside_budget(p))


def _tune(tmp_path, seed=0, budget=30, evaluator=None, **options):
    search = SearchSpace.resolve(synthetic_space(seed=seed), synthetic_plan())
    evaluator = evaluator or SyntheticEvaluator(seed)
    return Tuner(search, evaluator, TuneOptions(budget, **options), tmp_path).run(), search, evaluator


@pytest.mark.parametrize("seed", range(5))
def test_the_optimum_inside_the_budget_is_found_and_nothing_infeasible_is_recommended(tmp_path, seed):
    result, _, _ = _tune(tmp_path, seed, budget=40)  # of 216 configs; 30 trials found it for 9 seeds of 10
    winner = next(t for t in result.trials if t.kind != "confirm" and t.number == result.winner)
    assert inside_budget(winner.params) and true_speed(winner.params) > 0 and winner.feasible
    assert true_speed(winner.params) == pytest.approx(OPTIMUM)
    fastest = max(true_speed(p) for p in _all_configs())
    assert fastest > OPTIMUM  # the surface's fastest configs are outside the budget: the search had to refuse them
    assert sum(1 for t in result.trials if t.kind != "confirm" and t.measured and t.same_as is None) == 40


def test_quality_is_measured_once_per_output_combination_and_reused_by_speed_only_changes(tmp_path):
    _, search, evaluator = _tune(tmp_path, budget=20)
    started = [(p, q) for p, q in evaluator.calls if true_speed(p) > 0]
    keys = [search.quality_key(p) for p, _ in started]
    assert sum(q for _, q in started) == len(set(keys))  # one quality measurement per combination that started
    for i, (params, with_quality) in enumerate(started):
        assert with_quality == (search.quality_key(params) not in keys[:i])


def test_a_config_that_does_not_start_is_an_infeasible_trial_with_its_reason(tmp_path):
    result, _, _ = _tune(tmp_path, budget=20)
    crashed = [t for t in result.trials if t.measured and not t.measured.started]
    assert crashed, "the search never touched the crash region"
    for t in crashed:
        assert not t.feasible and any("did not start: engine exited" in w for w in t.why_not)
        assert t.number != result.winner


def test_a_known_bad_combination_starts_no_engine(tmp_path):
    result, _, evaluator = _tune(tmp_path, budget=20)
    bad = {t.quality_key for t in result.trials if t.measured and t.measured.quality and not t.quality.accepted}
    measured_bad = [t for t in result.trials if t.quality_key in bad and t.measured and t.measured.started]
    assert len(measured_bad) == len(bad)  # each measured once; later proposals answered from the cache
    assert len(evaluator.calls) == sum(1 for t in result.trials if t.measured)


def test_seeds_are_the_plan_rungs_in_order_baseline_first(tmp_path):
    result, _, _ = _tune(tmp_path, budget=6)
    seeds = [t for t in result.trials if t.kind == "seed"]
    assert [t.seed_of for t in seeds] == ["bf16", "int4-g128", "int4-g32", "int4-g32-ngram"]
    assert seeds[-1].params["base"] == "int4-g32" and seeds[-1].params["speculative"] == "ngram-k4"
    assert seeds[0].measured.rung == "bf16"  # the baseline keeps its name: the quality reference
    assert result.best_seed is not None and "the best plan rung" in result.summary


def test_resume_continues_the_same_study_without_measuring_anything_twice(tmp_path):
    class Interrupting(SyntheticEvaluator):
        def evaluate(self, params, name, with_quality, reference):
            if len(self.calls) == 6:
                raise KeyboardInterrupt
            return super().evaluate(params, name, with_quality, reference)

    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path, budget=12, evaluator=Interrupting())
    before = (tmp_path / "tune.jsonl").read_text().splitlines()
    assert len(before) == 6
    result, _, evaluator = _tune(tmp_path, budget=12)
    measured = [t for t in result.trials if t.kind != "confirm" and t.measured and t.same_as is None]
    assert len(measured) == 12
    assert [json.loads(x)["number"] for x in before] == [t.number for t in result.trials[:6]]
    keys = [json.dumps(t.params, sort_keys=True) for t in measured]
    assert len(keys) == len(set(keys))  # none measured twice
    assert len(evaluator.calls) == 6 + len([t for t in result.trials if t.kind == "confirm"])


def test_an_slo_makes_slow_configs_infeasible(tmp_path):
    result, _, _ = _tune(tmp_path, budget=10, slo={"tpot": 1000 / 150})  # tokens/s below 150 breaks it
    for t in result.trials:
        if t.measured and t.measured.started and max(t.measured.tpot_ms) > 1000 / 150:
            assert not t.feasible and any(w.startswith("SLO tpot p99") for w in t.why_not)
    winner = next(t for t in result.trials if t.number == result.winner)
    assert max(winner.measured.tpot_ms) <= 1000 / 150


def test_the_score_is_the_median_less_the_spread():
    assert robust_score([100, 100, 100], "decode_tps_long", 1.0) == 100
    assert robust_score([90, 100, 110], "decode_tps_long", 1.0) == pytest.approx(100 - 1.4826 * 10)
    assert robust_score([10, 20, 30], "ttft_p99", 1.0) == pytest.approx(29.8)
    assert robust_score([], "decode_tps_long", 1.0) is None


def test_space_errors_name_the_key(tmp_path):
    plan = synthetic_plan()
    with pytest.raises(SpaceError, match=r"speed\.kv_cache_dtype: not a speed-only knob"):
        SearchSpace.resolve(synthetic_space(speed={"kv_cache_dtype": [None, "fp8"]}), plan)
    with pytest.raises(SpaceError, match="base_rungs: nope is not a plan rung"):
        SearchSpace.resolve(synthetic_space(base_rungs=["nope"]), plan)
    with pytest.raises(SpaceError, match=r"output\.no_such_flag: unknown key for engine 'fake-vllm'"):
        SearchSpace.resolve(synthetic_space(output={"no_such_flag": [1]}), plan)
    with pytest.raises(SpaceError, match=r"speed\.max_num_seqs: Input should be greater than 0"):
        SearchSpace.resolve(synthetic_space(speed={"max_num_seqs": [0]}), plan)
    bad = tmp_path / "space.yaml"
    bad.write_text("speed: {max_num_seqs: [8]}\nsped: {}\n")
    with pytest.raises(SpaceError, match="sped"):
        load_space(bad, "vllm", False)
    with pytest.raises(ValueError, match="--slo 'latency=5'"):
        parse_slo("latency=5")
    assert parse_slo("ttft=500,tpot=50") == {"ttft": 500.0, "tpot": 50.0}


@pytest.mark.parametrize("engine,gpu", [("vllm", False), ("vllm", True), ("llama.cpp", False)])
def test_every_shipped_space_loads(engine, gpu):
    space, source = load_space(None, engine, gpu)
    assert isinstance(space, Space) and source.endswith(".yaml") and space.speed


def _fake_plan(tmp_path, model_dir):
    plan = {"name": "fake", "engine": "fake-vllm", "trials": 2,
            "workloads": [{"name": "long", "prompt": "more", "max_tokens": 16}],
            "suites": {"limit": 2},
            "rungs": [{"name": "base", "model": str(model_dir), "extra_args": ["--spec-drafts", "2"]},
                      {"name": "spec", "model": str(model_dir), "speculative": {"method": "ngram"},
                       "extra_args": ["--spec-drafts", "2"]}]}  # fmt: skip
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"speed": {"max_num_seqs": [None, 8, 999]}, "confirm_top": 1}))
    return path, space


def test_tune_end_to_end_on_the_fake_engine(tmp_path, model_dir):
    plan, space = _fake_plan(tmp_path, model_dir)
    out, written = tmp_path / "run", tmp_path / "tuned.yaml"
    args = ["tune", str(plan), "--space", str(space), "--budget-trials", "4", "--out", str(out)]
    result = runner.invoke(app, [*args, "--write-plan", str(written)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tune = json.loads((out / "tune.json").read_text())
    trials = tune["trials"]
    assert [t["kind"] for t in trials[:2]] == ["seed", "seed"] and trials[-1]["kind"] == "confirm"
    assert sum(1 for t in trials if t["kind"] != "confirm" and t["measured"] and t["same_as"] is None) == 4
    quality_runs = [t for t in trials if t["measured"] and t["measured"]["quality"]]
    assert len(quality_runs) == len({t["quality_key"] for t in quality_runs})  # speed-only variants reuse it
    for t in trials:
        if t["params"]["speed.max_num_seqs"] == 999:
            assert not t["feasible"] and "did not start" in t["why_not"][0]
    assert tune["winner"] is not None and "trial" in tune["summary"]
    assert "| trial |" in (out / "tune.md").read_text()
    html = (out / "report.html").read_text()
    assert "Tune trials" in html and "Tune: speed vs quality" in html
    assert json.loads((out / "results.json").read_text())["recommendation"]["rung"] is not None
    tuned = load_plan(written)
    assert tuned.rungs[-1].name == "tuned" and [r.name for r in tuned.rungs[:2]] == ["base", "spec"]
    assert tuned.rungs[-1].model == str(model_dir)  # the plan's model, not a resolved path


def test_tune_resumes_from_its_run_directory_and_can_grow_the_budget(tmp_path, model_dir):
    plan, space = _fake_plan(tmp_path, model_dir)
    out = tmp_path / "run"
    first = runner.invoke(app, ["tune", str(plan), "--space", str(space), "--budget-trials", "2", "--out", str(out)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["tune", "--resume", str(out), "--budget-trials", "3"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    trials = json.loads((out / "tune.json").read_text())["trials"]
    assert sum(1 for t in trials if t["kind"] != "confirm" and t["measured"] and t["same_as"] is None) == 3
    bad = runner.invoke(app, ["tune", "--resume", str(tmp_path)])
    assert bad.exit_code == 2 and "no tune-config.json" in bad.output


def test_a_trial_runs_the_objective_workload_and_the_load_sweep_only_for_goodput():
    from llm_ladder.tune.evaluator import trial_plan

    plan = synthetic_plan()
    assert trial_plan(plan, "ttft_p99", {}).objective == "ttft_ms"
    assert trial_plan(plan, "decode_tps_long", {}).load is None
    with pytest.raises(PlanError, match="--objective goodput needs a `load` section"):
        trial_plan(plan, "goodput", {})
    with pytest.raises(PlanError, match="--objective goodput needs SLOs"):
        trial_plan(plan.model_copy(update={"load": LoadSpec()}), "goodput", {})
    with pytest.raises(PlanError, match="--objective ttft_p99 is measured on a workload named 'short'"):
        trial_plan(plan.model_copy(update={"workloads": plan.workloads[1:2]}), "ttft_p99", {})
    loaded = plan.model_copy(update={"load": LoadSpec()})
    assert trial_plan(loaded, "goodput", {"ttft": 500.0}).load.slo == {"ttft": 500.0}


def test_a_baseline_that_does_not_run_stops_the_tune_with_the_reason(tmp_path):
    from llm_ladder.tune.study import TuneError

    class NoBaseline(SyntheticEvaluator):
        def evaluate(self, params, name, with_quality, reference):
            if name == "bf16":
                return Measured(started=False, error="engine exited with code 1 during startup", rung=name)
            return super().evaluate(params, name, with_quality, reference)

    with pytest.raises(TuneError, match=r"the baseline bf16 did not run \(engine exited with code 1"):
        _tune(tmp_path, budget=6, evaluator=NoBaseline())


def test_speculation_is_judged_against_its_measured_twin(tmp_path):
    _, search, evaluator = _tune(tmp_path, budget=20)
    for params, with_quality in evaluator.calls:
        if with_quality and params["speculative"] != "none" and true_speed(params) > 0:
            twin = search.quality_key(search.reference(params))
            assert any(
                search.quality_key(p) == twin and q
                for p, q in evaluator.calls[: evaluator.calls.index((params, with_quality))]
            )
    assert all(ref is not None for ref in evaluator.references)


def test_the_best_plan_rung_is_confirmed_too_and_confirm_runs_keep_their_own_numbers(tmp_path):
    result, _, _ = _tune(tmp_path, budget=8)
    confirms = [t for t in result.trials if t.kind == "confirm"]
    assert [t.number for t in confirms] == list(range(len(confirms)))
    assert result.best_seed in {t.confirms for t in confirms} and result.winner in {t.confirms for t in confirms}
    grown, _, _ = _tune(tmp_path, budget=10)  # resumed with a larger budget: new trials, numbers unshared
    numbers = [t.number for t in grown.trials if t.kind != "confirm"]
    assert len(numbers) == len(set(numbers)) and result.winner is not None


def test_a_confirm_run_that_breaks_an_slo_keeps_its_config_from_winning(tmp_path):
    from llm_ladder.tune.result import pooled_score

    result, _, _ = _tune(tmp_path, budget=8)
    winner = next(t for t in result.trials if t.kind != "confirm" and t.number == result.winner)
    confirm = next(t for t in result.trials if t.kind == "confirm" and t.confirms == winner.number)
    confirm.feasible, confirm.why_not = False, ["SLO ttft p99 900.0 ms > 500 ms"]
    assert pooled_score(result.trials, winner, "decode_tps_long", 1.0) is None


def test_a_directory_holding_a_tune_is_not_overwritten(tmp_path, model_dir):
    plan, space = _fake_plan(tmp_path, model_dir)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tune.jsonl").write_text("")
    result = runner.invoke(app, ["tune", str(plan), "--space", str(space), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "holds a tune already: --resume it" in result.output


def test_speculation_on_a_model_outside_the_budget_starts_no_engine(tmp_path):
    result, search, evaluator = _tune(tmp_path, budget=20)
    bad = set()
    for params, with_quality in evaluator.calls:
        if params["speculative"] != "none":
            assert search.quality_key(search.reference(params)) not in bad, params
        if with_quality and true_speed(params) > 0 and not inside_budget(params):
            bad.add(search.quality_key(params))
    inherited = [t for t in result.trials if t.quality and "speculation keeps the output" in t.quality.reasons[0]]
    assert inherited and all(t.measured is None and not t.feasible for t in inherited)
