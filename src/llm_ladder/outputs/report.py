"""`report.html`: a run directory as one self-contained page (charts inline, no network) to send a colleague.

Every string from the run — model answers above all — goes through the template's autoescaping; nothing is
marked safe but the SVG our own chart code drew.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pydantic import ValidationError

from llm_ladder.load.loadstats import LOAD_COLUMNS
from llm_ladder.outputs import charts
from llm_ladder.outputs.jsonl import read_lines
from llm_ladder.outputs.quality_tables import (
    AGREEMENT_COLUMNS,
    SUITE_COLUMNS,
    agreement_rows,
    refinement_facts,
    suite_rows,
)
from llm_ladder.outputs.results import RunSummary
from llm_ladder.outputs.summary import (
    COLUMNS,
    ROOFLINE_COLUMNS,
    STAGE_COLUMNS,
    bandwidth_note,
    load_rows,
    roofline_rows,
    rows,
    speed_workload,
    stage_rows,
)
from llm_ladder.plan.loading import describe_error


def environment() -> Environment:
    return Environment(
        loader=PackageLoader("llm_ladder.outputs", "templates"), autoescape=select_autoescape(default=True)
    )


def load_summary(run_dir: Path) -> RunSummary:
    """The run's results.json; a clear error when the directory is not a finished (or interrupted) run."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no results.json: not a run directory (or the run never started)")
    try:
        return RunSummary.model_validate_json(path.read_text())
    except ValidationError as err:
        raise ValueError(f"{path}: not a results.json this version reads ({describe_error(err)})") from None


def timings(run_dir: Path, summary: RunSummary) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """TTFTs and inter-token gaps (ms) per rung: the measured trials from results.jsonl, plus the load sweep's
    measured requests where there was one."""
    ttft: dict[str, list[float]] = {r.name: [] for r in summary.rungs}
    itl: dict[str, list[float]] = {r.name: [] for r in summary.rungs}
    trials = read_lines(run_dir / "results.jsonl")
    requests = [e for e in trials if e.get("type") == "request" and e.get("trial", 0) >= 0]
    for rung in summary.rungs:
        load = read_lines(run_dir / "load" / rung.name / "requests.jsonl")
        requests += [{**e, "rung": rung.name} for e in load if e.get("type") == "request" and e["phase"] == "measured"]
    for event in requests:
        if event.get("ok") and event.get("rung") in ttft and event.get("ttft_s") is not None:
            ttft[event["rung"]].append(event["ttft_s"] * 1000)
            itl[event["rung"]] += [gap * 1000 for gap in event.get("itl_s") or ()]
    return ttft, itl


def figures(run_dir: Path, summary: RunSummary) -> list[tuple[str, Markup]]:
    ttft, itl = timings(run_dir, summary)
    drawn = [
        ("Decode speed", charts.decode_chart(summary)),
        ("Quality budget vs speed", charts.budget_chart(summary, speed_workload(summary))),
        ("Task suites vs speed", charts.pareto_chart(summary, speed_workload(summary))),
        ("Time to first token", charts.ttft_chart(summary)),
        ("Memory", charts.memory_chart(summary)),
        ("Startup", charts.startup_chart(summary)),
        ("Where the time went", charts.phases_chart(summary)),
        ("Roofline", charts.roofline_chart(summary)),
        ("TTFT distribution", charts.histogram_chart("TTFT of every measured request", "ms", ttft)),
        ("ITL distribution", charts.histogram_chart("Gaps between streamed tokens", "ms", itl)),
        ("Concurrency", charts.concurrency_chart(summary)),
        ("Speculative decoding", charts.acceptance_chart(summary)),
    ]
    return [(title, Markup(svg)) for title, svg in drawn if svg]  # our own matplotlib output, no run text in it


def tables(summary: RunSummary) -> list[tuple[str, tuple[str, ...], list[list[str]]]]:
    found = [
        ("Agreement with the baseline", AGREEMENT_COLUMNS, agreement_rows(summary)),
        ("Task suites", SUITE_COLUMNS, suite_rows(summary)),
        (f"Roofline and energy (memory bandwidth {bandwidth_note(summary)})", ROOFLINE_COLUMNS, roofline_rows(summary)),
        ("Load", ("rung", *(c for c, _ in LOAD_COLUMNS)), load_rows(summary)),
        ("Startup stages", STAGE_COLUMNS, stage_rows(summary)),
    ]
    return [t for t in found if t[2]]


def tune_section(run_dir: Path, summary: RunSummary) -> tuple[list[tuple[str, Markup]], list]:
    """A `ladder tune` run: every trial's speed against quality, and the trial table."""
    from llm_ladder.tune.outputs import TRIAL_COLUMNS, load_result, trial_rows, tune_chart

    result = load_result(run_dir)
    if result is None:
        return [], []
    chart = tune_chart(result, (summary.quality_budget or {}).get("min_same_top", 0.9))
    return [("Tune: speed vs quality", Markup(chart))] if chart else [], [
        ("Tune trials", TRIAL_COLUMNS, trial_rows(result))
    ]


def render(run_dir: Path, summary: RunSummary) -> str:
    workload = "short" if any(r.sample_outputs.get("short") for r in summary.rungs) else speed_workload(summary)
    tune_figures, tune_tables = tune_section(run_dir, summary)
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            summary=summary,
            columns=COLUMNS,
            rows=rows(summary),
            figures=tune_figures + figures(run_dir, summary),
            tables=tune_tables + tables(summary),
            answer_workload=workload,
            calibration=refinement_facts(summary),
            answers=[(r.name, r.sample_outputs[workload]) for r in summary.rungs if r.sample_outputs.get(workload)],
        )
    )


def write_report(run_dir: Path) -> Path:
    """Render `run_dir/report.html` from the run's files; returns its path."""
    html = render(run_dir, load_summary(run_dir))
    path = run_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
