"""`ladder compare`: the same rungs across runs, each value against the first run's, and a difference marked
only where it is larger than the trials' spread (min–max ranges, or 95% intervals for accuracies, that do not
overlap). A value measured once has no spread, so its change is shown but never marked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from llm_ladder.measure.metrics import Spread
from llm_ladder.outputs.report import environment, load_summary
from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.outputs.summary import memory_gib


@dataclass(frozen=True)
class Value:
    """A value with the range it could take: min–max over trials, a confidence interval, or none."""

    value: float
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, spread: Spread | None) -> Value | None:
        """A median over trials with its range; one trial has no range to judge a difference by."""
        if spread is None:
            return None
        return cls(spread.median, spread.min, spread.max) if spread.n > 1 else cls(spread.median)


def _workload(name: str, field: str) -> Callable[[RungResult], Value | None]:
    return lambda r: Value.of(getattr(r.workloads[name], field)) if name in r.workloads else None


def _suite(name: str) -> Callable[[RungResult], Value | None]:
    def get(r: RungResult) -> Value | None:
        score = r.suites.get(name)
        return None if score is None else Value(100 * score.accuracy, 100 * score.ci95[0], 100 * score.ci95[1])

    return get


def _plain(get: Callable[[RungResult], float | None]) -> Callable[[RungResult], Value | None]:
    return lambda r: None if (v := get(r)) is None else Value(v)


Metric = tuple[str, bool, Callable[[RungResult], Value | None]]
"""Name, whether higher is better, and how to read it from a rung."""


def metrics(runs: list[RunSummary]) -> list[Metric]:
    workloads = sorted({w for run in runs for r in run.rungs for w in r.workloads})
    suites = sorted({s for run in runs for r in run.rungs for s in r.suites})
    out: list[Metric] = []
    for w in workloads:
        out += [
            (f"decode tok/s ({w})", True, _workload(w, "decode_tps")),
            (f"TTFT ms ({w})", False, _workload(w, "ttft_ms")),
        ]
    out += [(f"accuracy % ({s})", True, _suite(s)) for s in suites]
    out += [
        ("peak memory GiB", False, _plain(memory_gib)),
        ("startup s", False, _plain(lambda r: r.startup.total_s if r.startup else None)),
    ]
    return out


class Cell(BaseModel):
    text: str
    mark: str = ""
    """'better' or 'worse' than the first run, beyond the spread; empty otherwise."""


class Row(BaseModel):
    rung: str
    metric: str
    cells: list[Cell]


def _number(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _cell(value: Value | None, ref: Value | None, higher_better: bool) -> Cell:
    if value is None:
        return Cell(text="n/a")
    text = _number(value.value)
    if value.low is not None and value.high is not None and value.low != value.high:
        text += f" ({_number(value.low)}–{_number(value.high)})"
    if ref is None or ref is value or not ref.value:
        return Cell(text=text)
    text += f" [{value.value / ref.value - 1:+.1%}]"
    apart = None not in (value.low, ref.high, value.high, ref.low) and (value.low > ref.high or value.high < ref.low)
    if not apart:
        return Cell(text=text)
    return Cell(text=text, mark="better" if (value.value > ref.value) == higher_better else "worse")


def compare(runs: list[RunSummary]) -> list[Row]:
    """A row per rung and metric that any run has, in the first run's rung order."""
    names = list(dict.fromkeys(r.name for run in runs for r in run.rungs))
    by_run = [{r.name: r for r in run.rungs if r.status == "ok"} for run in runs]
    rows = []
    for name in names:
        for metric, higher_better, get in metrics(runs):
            values = [get(rungs[name]) if name in rungs else None for rungs in by_run]
            if all(v is None for v in values):
                continue
            cells = [_cell(v, values[0], higher_better) for v in values]
            rows.append(Row(rung=name, metric=metric, cells=cells))
    return rows


def load_runs(paths: list[Path]) -> list[RunSummary]:
    if len(paths) < 2:
        raise ValueError("compare needs at least two run directories")
    return [load_summary(p) for p in paths]


def write_compare(paths: list[Path], out: Path) -> tuple[list[Row], Path]:
    """compare.html and compare.md in `out`; returns the rows and the HTML's path."""
    runs = load_runs(paths)
    rows = compare(runs)
    labels = [p.name or str(p) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    html = environment().get_template("compare.html.j2").render(labels=labels, rows=rows, runs=runs)
    (out / "compare.html").write_text(html, encoding="utf-8")
    (out / "compare.md").write_text(to_markdown(labels, rows))
    return rows, out / "compare.html"


def to_markdown(labels: list[str], rows: list[Row]) -> str:
    marks = {"better": " ▲", "worse": " ▼", "": ""}
    lines = [
        f"# Compare: {' vs '.join(labels)}",
        "",
        f"Each value against `{labels[0]}` [change]; ▲ better / ▼ worse only where the ranges do not overlap.",
        "",
        "| rung | metric | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for row in rows:
        lines.append(f"| {row.rung} | {row.metric} | " + " | ".join(c.text + marks[c.mark] for c in row.cells) + " |")
    return "\n".join(lines) + "\n"
