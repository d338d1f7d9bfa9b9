"""The report's charts, drawn by matplotlib as inline SVG: no JavaScript and no network, so a report opens
anywhere. Every function returns an `<svg>` string, or None when the run has nothing to draw."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt

from llm_ladder.measure.metrics import Spread, percentile
from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.outputs.summary import PHASE_COLUMNS, memory_gib, phase_cells

plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "llm-ladder", "font.size": 9, "figure.dpi": 96})
HIGHLIGHT, NORMAL = "#d62728", "#1f77b4"


def _svg(fig: plt.Figure) -> str:
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _ok(summary: RunSummary) -> list[RungResult]:
    return [r for r in summary.rungs if r.status == "ok"]


def _bars(title: str, ylabel: str, rungs: Sequence[str], series: dict[str, list[Spread | float | None]]) -> str | None:
    """Grouped bars, one group per rung; a Spread draws its min–max as an error bar."""
    if not any(v is not None for values in series.values() for v in values):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(rungs))]
        heights = [(v.median if isinstance(v, Spread) else v) or 0 for v in values]
        low = [h - v.min if isinstance(v, Spread) else 0 for h, v in zip(heights, values, strict=True)]
        high = [v.max - h if isinstance(v, Spread) else 0 for h, v in zip(heights, values, strict=True)]
        ax.bar(xs, heights, width, label=label, yerr=[low, high], capsize=3)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(rungs))], rungs)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend()
    return _svg(fig)


def _workload(r: RungResult, name: str, pick: Callable) -> Spread | float | None:
    stats = r.workloads.get(name)
    return pick(stats) if stats else None


def decode_chart(summary: RunSummary) -> str | None:
    rungs = _ok(summary)
    names = sorted({w for r in rungs for w in r.workloads})
    series = {w: [_workload(r, w, lambda s: s.decode_tps) for r in rungs] for w in names}
    return _bars("Decode speed (median, min–max over trials)", "tokens/s", [r.name for r in rungs], series)


def ttft_chart(summary: RunSummary) -> str | None:
    rungs = _ok(summary)
    names = sorted({w for r in rungs for w in r.workloads})
    series = {w: [_workload(r, w, lambda s: s.ttft_ms) for r in rungs] for w in names}
    return _bars("Time to first token", "ms", [r.name for r in rungs], series)


def memory_chart(summary: RunSummary) -> str | None:
    rungs = _ok(summary)
    peak = [memory_gib(r) for r in rungs]
    series = {"weights": [r.weights_gib for r in rungs], "peak (GPU, else engine RSS)": peak}
    return _bars("Memory", "GiB", [r.name for r in rungs], series)


STAGES = (("weights_s", "weights"), ("compile_s", "compile"), ("graph_capture_s", "graphs"), ("engine_init_s", "init"))


def startup_chart(summary: RunSummary) -> str | None:
    """Stacked stages per rung, each labelled with its compile cache state (cold, warm, ...)."""
    rungs = [r for r in summary.rungs if r.startup and r.startup.total_s is not None]
    if not rungs:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"{r.name}\n({r.startup.compile_cache})" for r in rungs]
    bottom = [0.0] * len(rungs)
    for field, label in STAGES:
        values = [getattr(r.startup, field) or 0.0 for r in rungs]
        ax.bar(labels, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    other = [max(0.0, r.startup.total_s - b) for r, b in zip(rungs, bottom, strict=True)]
    ax.bar(labels, other, bottom=bottom, label="other (to /health)", color="#cccccc")
    ax.set_title("Startup stages")
    ax.set_ylabel("s")
    ax.legend(fontsize=7)
    return _svg(fig)


def phases_chart(summary: RunSummary) -> str | None:
    """Where each rung's time went: its phases stacked as horizontal bars (seconds)."""
    rungs = [r for r in summary.rungs if r.phases]
    if not rungs:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * len(rungs)))
    cells = [phase_cells(r)[:-1] for r in rungs]
    left = [0.0] * len(rungs)
    for i, name in enumerate(PHASE_COLUMNS):
        values = [c[i] for c in cells]
        if any(values):
            ax.barh([r.name for r in rungs], values, left=left, label=name)
            left = [x + v for x, v in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_title("Where the time went")
    ax.set_xlabel("s")
    ax.legend(fontsize=7, ncol=3)
    return _svg(fig)


def quality(r: RungResult) -> tuple[float, str] | None:
    """One quality figure per rung for the Pareto chart: mean suite accuracy, else same-top agreement."""
    if r.suites:
        return 100 * sum(s.accuracy for s in r.suites.values()) / len(r.suites), "task-suite accuracy, mean %"
    if r.agreement:
        return 100 * r.agreement.same_top, "same top token as the baseline, %"
    return None


def pareto_chart(summary: RunSummary, workload: str) -> str | None:
    points = [(r, q, r.decode_tps(workload)) for r in _ok(summary) if (q := quality(r)) and r.decode_tps(workload)]
    if not points:
        return None
    chosen = summary.recommendation.rung if summary.recommendation else None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r, (value, _), tps in points:
        mine = r.name == chosen
        ax.scatter([tps], [value], s=80 if mine else 40, color=HIGHLIGHT if mine else NORMAL, zorder=3)
        ax.annotate(r.name + (" (recommended)" if mine else ""), (tps, value), textcoords="offset points",
                    xytext=(5, 5), color=HIGHLIGHT if mine else "black")  # fmt: skip
    front = _front([(tps, value) for _, (value, _), tps in points])
    ax.plot(*zip(*front, strict=True), linestyle="--", color="#888888", zorder=2, label="Pareto front")
    ax.set_xlabel(f"decode tokens/s ({workload})")
    ax.set_ylabel(points[0][1][1])
    ax.set_title("Quality vs speed")
    ax.legend(fontsize=7)
    return _svg(fig)


def _verdicts(summary: RunSummary) -> dict[str, bool]:
    return {v.rung: v.accepted for v in summary.recommendation.verdicts} if summary.recommendation else {}


def budget_chart(summary: RunSummary, workload: str) -> str | None:
    """Speed against the two agreement measures the budget judges (mean KL, same top token), the budget drawn
    as a line with the failing side shaded: the chart shows why each rung was accepted or rejected."""
    budget = summary.quality_budget or {}
    points = [(r, r.decode_tps(workload)) for r in _ok(summary) if r.agreement and r.decode_tps(workload)]
    if not points or not budget:
        return None
    accepted, chosen = _verdicts(summary), summary.recommendation.rung if summary.recommendation else None
    fig, (kl_ax, top_ax) = plt.subplots(1, 2, figsize=(8, 3.4))
    panels = (
        (kl_ax, lambda r: r.agreement.mean_kl, budget.get("max_mean_kl"), "mean KL vs the baseline", True),
        (top_ax, lambda r: 100 * r.agreement.same_top, 100 * budget.get("min_same_top", 0), "same top token, %", False),
    )
    for ax, value, limit, label, upper in panels:
        for r, tps in points:
            colour = HIGHLIGHT if r.name == chosen else (NORMAL if accepted.get(r.name) else "#999999")
            ax.scatter([tps], [value(r)], color=colour, zorder=3, s=70 if r.name == chosen else 35)
            ax.annotate(r.name, (tps, value(r)), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if limit is not None:
            ax.axhline(
                limit, color=HIGHLIGHT, linestyle="--", linewidth=1, label=f"budget {'≤' if upper else '≥'} {limit:g}"
            )
            lo, hi = ax.get_ylim()
            ax.axhspan(limit, max(hi, limit * 1.1), color="#f4cccc", alpha=0.5) if upper else ax.axhspan(
                min(lo, limit - 1), limit, color="#f4cccc", alpha=0.5
            )
        ax.set_xlabel(f"decode tokens/s ({workload})")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Quality budget vs speed (grey: rejected, red: recommended; shaded: outside the budget)", fontsize=8)
    return _svg(fig)


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both speed and quality, by speed."""
    best = [p for p in points if not any(o[0] >= p[0] and o[1] >= p[1] and o != p for o in points)]
    return sorted(best)


def histogram_chart(title: str, xlabel: str, samples: dict[str, list[float]]) -> str | None:
    samples = {k: v for k, v in samples.items() if v}
    if not samples:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    top = percentile([v for values in samples.values() for v in values], 99)  # one stall would squash the rest
    for name, values in samples.items():
        ax.hist(values, bins=40, range=(0, top), histtype="step", label=name, linewidth=1.4)
    ax.set_title(title)
    ax.set_xlabel(f"{xlabel} (up to the 99th percentile, {top:.0f})")
    ax.set_ylabel("count")
    ax.legend(fontsize=7)
    return _svg(fig)


def concurrency_chart(summary: RunSummary) -> str | None:
    """Output throughput and median TTFT against concurrency, one line per rung (the plan's load sweep)."""
    sweeps = {r.name: [lv for lv in r.load["levels"] if lv.get("concurrency")] for r in summary.rungs if r.load}
    sweeps = {k: v for k, v in sweeps.items() if len(v) > 1}
    if not sweeps:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    for name, levels in sweeps.items():
        xs = [lv["concurrency"] for lv in levels]
        left.plot(xs, [lv["output_throughput"] for lv in levels], marker="o", label=name)
        right.plot(xs, [lv.get("median_ttft_ms") for lv in levels], marker="o", label=name)
    left.set(title="Output throughput", xlabel="concurrency", ylabel="tokens/s")
    right.set(title="Median TTFT", xlabel="concurrency", ylabel="ms")
    left.legend(fontsize=7)
    return _svg(fig)


def acceptance_chart(summary: RunSummary) -> str | None:
    rungs = [r for r in _ok(summary) if r.spec]
    names = sorted({w for r in rungs for w in r.spec})
    series = {w: [_pct(r.spec[w].acceptance_rate) if w in r.spec else None for r in rungs] for w in names}
    return _bars("Speculative decoding: draft acceptance", "% accepted", [r.name for r in rungs], series)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def roofline_chart(summary: RunSummary) -> str | None:
    rungs = [r for r in _ok(summary) if r.roofline]
    names = sorted({roof.workload for r in rungs for roof in r.roofline})
    series = {w: [next((x.percent for x in r.roofline if x.workload == w), None) for r in rungs] for w in names}
    return _bars("Memory bandwidth used by decoding", "% of the limit", [r.name for r in rungs], series)
