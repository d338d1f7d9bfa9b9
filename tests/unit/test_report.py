import json
import re

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.base import StartupStages
from llm_ladder.measure.metrics import Spread
from llm_ladder.measure.roofline import Bandwidth, roofline
from llm_ladder.measure.telemetry import MemoryStats
from llm_ladder.outputs.compare import compare
from llm_ladder.outputs.report import write_report
from llm_ladder.outputs.results import Recommendation, RungResult, RunSummary, SpecSummary, Verdict
from llm_ladder.plan.schema import QualityBudget
from llm_ladder.quality.agreement import Agreement
from llm_ladder.quality.suites import SuiteScore

from ..browser import chromium, open_report, painted_share
from .test_summary import _stats

SCRIPT = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _rung(name, tps, answer="An answer.", **extra):
    return RungResult(
        name=name,
        status="ok",
        model=f"model-{name}",
        config={},
        workloads={"short": _stats(tps), "long": _stats(tps)},
        sample_outputs={"short": answer},
        weights_gib=1.0,
        memory=MemoryStats(peak_rss_gib=2.0),
        phases={"startup": 20.0, "workload short": 3.0, "workload long": 9.0, "suites": 12.0, "stop": 1.0},
        startup=StartupStages(weights_s=2, compile_s=10, graph_capture_s=3, total_s=20, compile_cache="cold"),
        suites={"exact": SuiteScore(suite="exact", n=40, passed=int(tps))},
        roofline=[roofline("long", 1 << 30, 65536, 300, tps, Bandwidth(gbs=100, source="given"))],
        agreement=Agreement(
            tokens=100,
            perplexity=10 + tps / 100,
            baseline_perplexity=10.0,
            mean_kl=tps / 400,
            p99_kl=0.1,
            same_top=1 - tps / 200,
        ),
        **extra,
    )


def _run(tmp_path, name="run", answer=SCRIPT, fast_tps=20.0):
    spec = {
        "long": SpecSummary(
            drafts=10, draft_tokens=40, accepted_tokens=20, acceptance_rate=0.5, mean_acceptance_length=3.0
        )
    }
    levels = [
        {"shape": f"concurrency {c}", "concurrency": c, "output_throughput": 10.0 * c, "median_ttft_ms": 50.0 * c}
        for c in (1, 2, 4)
    ]
    rungs = [
        _rung("bf16", 10.0, answer=answer),
        _rung("int4", fast_tps, load={"levels": levels, "knee_concurrency": 2}),
        _rung("int4-spec", 25.0, spec=spec),
    ]
    verdicts = [Verdict(rung=r.name, accepted=r.agreement.mean_kl <= 0.05, reasons=["fine"]) for r in rungs]
    rec = Recommendation(objective="decode_tps_long", rung="int4", summary="deploy int4", verdicts=verdicts)
    summary = RunSummary(
        plan="p",
        started_at="now",
        baseline="bf16",
        rungs=rungs,
        recommendation=rec,
        quality_budget=QualityBudget().model_dump(),
    )
    run = tmp_path / name
    run.mkdir()
    (run / "results.json").write_text(summary.model_dump_json())
    requests = [
        {"type": "request", "rung": r.name, "trial": t, "ok": True, "ttft_s": 0.1 + t / 100, "itl_s": [0.05, 0.06]}
        for r in rungs
        for t in range(3)
    ]
    (run / "results.jsonl").write_text("\n".join(json.dumps(x) for x in requests) + "\n")
    return run


def test_report_is_self_contained_escapes_answers_and_draws_the_charts(tmp_path):
    html = write_report(_run(tmp_path)).read_text()
    assert SCRIPT not in html and "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html  # shown as text, not run
    assert not re.search(r"(src|href)=[\"']?https?://", html)  # nothing fetched from the network
    titles = re.findall(r"<figcaption>([^<]+)</figcaption>", html)
    for title in (
        "Decode speed",
        "Quality budget vs speed",
        "Task suites vs speed",
        "Time to first token",
        "Memory",
        "Startup",
        "Roofline",
        "Where the time went",
    ):
        assert title in titles
    assert {"TTFT distribution", "ITL distribution", "Concurrency", "Speculative decoding"} <= set(titles)
    assert html.count("<svg") == len(titles)
    assert re.search(r'<tr class="chosen">\s*<td>int4</td>', html)  # the recommended rung stands out
    assert "deploy int4" in html and "% of bandwidth" in html


def test_compare_marks_only_differences_beyond_the_spread(tmp_path):
    a = RunSummary.model_validate_json((_run(tmp_path, "a") / "results.json").read_text())
    b = RunSummary.model_validate_json((_run(tmp_path, "b", fast_tps=30.0) / "results.json").read_text())
    c = RunSummary.model_validate_json((_run(tmp_path, "c", fast_tps=21.0) / "results.json").read_text())
    rows = {(r.rung, r.metric): r.cells for r in compare([a, b, c])}
    speed = rows[("int4", "decode tok/s (long)")]
    assert speed[0].mark == "" and speed[1].mark == "better" and "[+50.0%]" in speed[1].text
    assert speed[2].mark == ""  # 21 ± 1 overlaps 20 ± 1: within the spread
    assert rows[("int4", "TTFT ms (long)")][1].mark == ""
    assert rows[("int4", "peak memory GiB")][1].mark == ""  # measured once: never marked
    one_trial = a.model_copy(deep=True)
    for rung in one_trial.rungs:
        for stats in rung.workloads.values():
            stats.decode_tps = Spread(median=1.0, min=1.0, max=1.0, n=1)
    assert all(c.mark == "" for r in compare([one_trial, b]) for c in r.cells if "tok/s" in r.metric)


def test_ladder_report_and_compare_commands(tmp_path):
    runner = CliRunner()
    a, b = _run(tmp_path, "a"), _run(tmp_path, "b", fast_tps=30.0)
    result = runner.invoke(app, ["report", str(a)])
    assert result.exit_code == 0 and (a / "report.html").is_file()
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| int4 | decode tok/s (long) | 20 (19–21) | 30 (29–31) [+50.0%] ▲ |" in markdown
    assert "<script" not in (tmp_path / "cmp" / "compare.html").read_text().lower()
    result = runner.invoke(app, ["compare", str(a)])
    assert result.exit_code == 2 and "at least two run directories" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no results.json" in result.output
    (b / "results.json").write_text('{"plan": 3}')
    result = runner.invoke(app, ["report", str(b)])
    assert result.exit_code == 2 and "not a results.json this version reads" in result.output


@pytest.mark.skipif(chromium() is None, reason="Chromium not installed")
def test_the_report_renders_in_chromium_without_console_errors(tmp_path):
    page = write_report(_run(tmp_path))
    dom, console = open_report(page, tmp_path / "report.png")
    assert console == [], console
    assert dom.count("<svg") >= 10 and '<table id="ladder">' in dom
    painted, colours = painted_share(tmp_path / "report.png")
    assert painted > 0.05 and colours > 50
