import re
from pathlib import Path

import pytest

from llm_ladder.plan.loading import load_plan, parse_plan, shipped_plans
from llm_ladder.plan.schema import DEFAULT_WORKLOADS, PlanError


def _plan(**over):
    raw = {"name": "p", "rungs": [{"name": "a", "model": "org/m"}]}
    raw.update(over)
    return raw


@pytest.mark.parametrize("name", ["smollm2-cpu", "smollm2-cpu-engines", "thor-llama31-8b", "gpt-oss-120b"])
def test_shipped_plans_validate_and_can_be_judged(name):
    plan = load_plan(name)
    assert not plan.baseline.speculative  # the reference of every quality figure decodes plainly
    assert len({r.name for r in plan.rungs}) == len(plan.rungs)
    for rung in plan.rungs:  # every speculative rung's greedy identity has a reference in the same plan
        assert not rung.speculative or plan.without_speculation(rung) is not None, rung.name


def test_default_plan_is_the_amx_cpu_ladder():
    plan = load_plan(None)
    assert plan.name == "smollm2-cpu"
    assert [r.name for r in plan.rungs] == ["bf16", "int8-rtn", "int8-mixed", "int8", "int4", "int4-ngram"]
    assert plan.rungs[-1].speculative["method"] == "ngram"


def test_thor_plan_matches_the_workshop():
    plan = load_plan("thor-llama31-8b")
    assert [r.model for r in plan.rungs] == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "nvidia/Llama-3.1-8B-Instruct-FP8",
        "nvidia/Llama-3.1-8B-Instruct-FP4",
        "nvidia/Llama-3.1-8B-Instruct-FP4",
    ]
    spec = plan.rungs[-1].speculative
    assert spec == {
        "method": "eagle3",
        "model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
        "num_speculative_tokens": 5,
    }
    assert all(
        r.args["gpu_memory_utilization"] and r.args["max_model_len"] and r.args["max_num_seqs"] for r in plan.rungs
    )


def test_gpt_oss_plan_sets_offline_tiktoken():
    rung = load_plan("gpt-oss-120b").rungs[0]
    assert rung.model == "openai/gpt-oss-120b"
    assert "TIKTOKEN_ENCODINGS_BASE" in rung.env


def test_defaults_merge_under_rung_values():
    plan = parse_plan(
        _plan(
            defaults={"max_model_len": 1024, "dtype": "bfloat16"},
            rungs=[{"name": "a", "model": "m/x", "dtype": "half"}],
        )
    )
    assert plan.rungs[0].args == {"max_model_len": 1024, "dtype": "half"}


def test_default_workloads_are_the_workshop_prompt_a_long_one_and_an_edit():
    short, long, edit = DEFAULT_WORKLOADS
    assert "Jetson Thor" in short.prompt and short.max_tokens == 256 and short.temperature == 0.7
    assert long.min_tokens >= 512
    assert "rover" in edit.prompt and len(edit.prompt) > 2000 and edit.min_tokens >= 256 and edit.temperature > 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_plan(bogus=1), "bogus: unknown key"),
        (_plan(rungs=[{"name": "a", "model": "m/x", "dtyp": "x"}]), "rungs.0.dtyp: unknown key"),
        (_plan(rungs=[]), "rungs"),
        (
            _plan(rungs=[{"name": "a", "model": "m/x"}, {"name": "a", "model": "m/y"}]),
            "duplicate rung names: a",
        ),
        (_plan(rungs=[{"name": "a b", "model": "m/x"}]), "must be letters"),
        (
            _plan(rungs=[{"name": "a", "model": "m/x", "speculative": {"method": "magic"}}]),
            "speculative.method",
        ),
        (_plan(rungs=[{"name": "a", "model": "m/x", "expect_log": ["("]}]), "not a valid regex"),
        (
            _plan(rungs=[{"name": "a", "model": "m/x", "gpu_memory_utilization": 1.5}]),
            "gpu_memory_utilization",
        ),
        (
            _plan(workloads=[{"name": "w", "prompt": "p", "max_tokens": 5, "min_tokens": 9}]),
            "exceeds max_tokens",
        ),
        ([1, 2], "must be a YAML mapping"),
    ],
)
def test_bad_plans_get_one_clear_error(raw, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        parse_plan(raw, "test.yaml")


def test_malformed_yaml_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrungs: [\n  - a\n")
    with pytest.raises(PlanError, match=r"bad.yaml: line \d+ malformed YAML"):
        load_plan(bad)


def test_unknown_plan_name_lists_the_shipped_ones():
    with pytest.raises(PlanError, match="smollm2-cpu"):
        load_plan("no-such-plan")
    assert "smollm2-cpu" in shipped_plans()


def test_rung_lookup_error_lists_rungs():
    plan = load_plan("smollm2-cpu")
    with pytest.raises(PlanError, match=r"has no rung 'fp8'.*bf16"):
        plan.rung("fp8")


def test_objective_must_name_a_measured_workload():
    raw = _plan(workloads=[{"name": "greedy", "prompt": "p", "max_tokens": 8}])
    with pytest.raises(PlanError, match="objective 'decode_tps_long' needs a workload named 'long'"):
        parse_plan(raw)
    with pytest.raises(PlanError, match="objective 'ttft_ms' needs a workload named 'short'"):
        parse_plan({**raw, "objective": "ttft_ms"})  # it used to take whichever workload came first, silently
    short = _plan(workloads=[{"name": "short", "prompt": "p", "max_tokens": 8}])
    assert parse_plan({**short, "objective": "ttft_ms"}).objective == "ttft_ms"


def test_the_speculative_rungs_reference_ignores_defaults_spelled_out_and_the_engine_named():
    plan = parse_plan(
        {"name": "p", "engine": "fake-vllm", "rungs": [
            {"name": "base", "model": "m/x", "dtype": "bfloat16"},
            {"name": "spec", "model": "m/x", "dtype": "bfloat16", "enforce_eager": False, "engine": "fake-vllm",
             "speculative": {"method": "ngram"}},
            {"name": "other", "model": "m/x", "dtype": "half", "speculative": {"method": "ngram"}},
        ]}
    )  # fmt: skip
    assert plan.without_speculation(plan.rung("spec")).name == "base"
    assert plan.without_speculation(plan.rung("other")) is None  # a different dtype is another model's output
