from llm_ladder.measure.metrics import Spread, WorkloadStats
from llm_ladder.outputs.results import RungResult, RunSummary, SpecSummary
from llm_ladder.outputs.summary import rows, to_markdown


def _stats(tps, repetition=0.1):
    s = Spread(median=tps, min=tps - 1, max=tps + 1, n=3)
    return WorkloadStats(
        requests=3,
        errors=0,
        ttft_ms=Spread(median=100, min=90, max=110, n=3),
        decode_tps=s,
        e2e_tps=s,
        itl_p50_ms=10,
        itl_p95_ms=12,
        prompt_tokens=20,
        completion_tokens=Spread(median=512, min=512, max=512, n=3),
        repetition=Spread(median=repetition, min=repetition, max=repetition, n=3),
        degenerate=repetition > 0.5,
    )


def _summary():
    base = RungResult(
        name="bf16",
        status="ok",
        model="m",
        config={},
        workloads={"short": _stats(10), "long": _stats(10)},
        sample_outputs={"short": "Thor helps.\n<script>alert(1)</script> a|b"},
    )
    fast = RungResult(
        name="int4",
        status="ok",
        model="m-q",
        config={},
        workloads={"short": _stats(20), "long": _stats(25, repetition=0.8)},
    )
    spec = RungResult(
        name="spec",
        status="ok",
        model="m-q",
        config={},
        workloads={"long": _stats(8)},
        spec={
            "long": SpecSummary(
                drafts=10, draft_tokens=40, accepted_tokens=0, acceptance_rate=0.0, mean_acceptance_length=1.0
            )
        },
    )
    broken = RungResult(name="broken", status="failed", model="m", config={}, error="engine exited with code 1")
    return RunSummary(plan="p", started_at="now", baseline="bf16", rungs=[base, fast, spec, broken])


def test_rows_give_speedup_on_long_outputs_with_spread():
    table = {r[0]: r for r in rows(_summary())}
    assert table["bf16"][8] == "1.00×" and table["int4"][8] == "2.50×"
    assert table["int4"][7] == "25.0 (24.0–26.0) ⚠ repetitive"
    assert table["spec"][9] == "0% (len 1.00)"
    assert table["broken"][6] == "n/a" and table["broken"][-1] == "failed"


def test_markdown_explains_failures_loops_and_useless_speculation():
    md = to_markdown(_summary())
    assert "**broken** failed: engine exited with code 1" in md
    assert "**int4** `long` output repeats itself" in md
    assert "**spec** `long`: the engine rejected all 40 drafted tokens" in md
    assert "| bf16 | Thor helps.<br>&lt;script&gt;alert(1)&lt;/script&gt; a\\|b |" in md  # untrusted text escaped


def test_calibration_is_shown_against_its_round_to_nearest_twin():
    from llm_ladder.outputs.results import RungResult, RunSummary
    from llm_ladder.outputs.summary import to_markdown
    from llm_ladder.quality.agreement import Agreement

    def rung(name, model, kl, same):
        agree = Agreement(tokens=2000, perplexity=10.3, baseline_perplexity=10, mean_kl=kl, p99_kl=0.1, same_top=same)
        return RungResult(name=name, status="ok", model=model, config={}, agreement=agree,
                          workloads={"long": _stats(50.0)})  # fmt: skip

    summary = RunSummary(plan="p", started_at="t", baseline="int8-rtn", rungs=[
        rung("int8-rtn", "m-w8a8", 0.0184, 0.881), rung("int8", "m-w8a8-gptq", 0.0101, 0.923)])  # fmt: skip
    md = to_markdown(summary)
    assert "## What calibration and mixed precision bought" in md
    assert "- int8 (calibrated) against int8-rtn (round-to-nearest): mean KL 0.0184 → 0.0101" in md
    assert "same top token 88.1% → 92.3%" in md
    q4, q4i, spec = rung("q4", "m", 0.0536, 0.859), rung("q4-imatrix", "m", 0.032, 0.888), rung("q4-ngram", "m", 0, 1)
    q4.model_path, q4i.model_path, spec.model_path = "/g/Q4_K_M.gguf", "/g/Q4_K_M-imatrix.gguf", "/g/Q4_K_M.gguf"
    spec.config = {"speculative": {"method": "ngram"}}  # the same file speculating is not the round-to-nearest twin
    summary = RunSummary(plan="p", started_at="t", baseline="q4", rungs=[q4, q4i, spec])
    assert "- q4-imatrix (importance matrix) against q4 (round-to-nearest): mean KL 0.0536 → 0.0320" in to_markdown(
        summary
    )


def test_the_time_table_sums_workloads_and_totals_each_rung():
    from llm_ladder.outputs.results import RungResult, RunSummary
    from llm_ladder.outputs.summary import PHASE_COLUMNS, phase_cells, to_markdown

    r = RungResult(name="a", status="ok", model="m", config={},
                   phases={"startup": 30.0, "warmup": 1.0, "workload short": 4.0, "workload long": 6.0, "suites": 9.0})  # fmt: skip
    cells = phase_cells(r)
    assert cells[PHASE_COLUMNS.index("workloads")] == 10.0 and cells[-1] == 50.0
    summary = RunSummary(plan="p", started_at="t", baseline="a", rungs=[r], phases={"prepare": 5.0})
    md = to_markdown(summary)
    assert (
        "The climb itself: prepare 5 s, 55 s in all." in md and "| a | 30 | 1 | 10 | 0 | 0 | 9 | 0 | 0 | 0 | 50 |" in md
    )
