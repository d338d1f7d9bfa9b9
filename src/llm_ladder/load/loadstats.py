"""Statistics of a load run under the names `vllm bench serve` writes (`mean_ttft_ms`, `p99_itl_ms`,
`output_throughput`, `request_goodput`, ...), so our JSON can be read by the same scripts; plus errors by kind,
the concurrency sweep's knee, and a CSV of a sweep.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from llm_ladder.load.loadgen import LoadRecord, LoadRun
from llm_ladder.measure.metrics import percentile

PERCENTILES = (50, 90, 95, 99)
SLO_KEYS = {"ttft": "ttft", "tpot": "tpot", "e2e": "e2el", "e2el": "e2el"}


def parse_slo(text: str) -> dict[str, float]:
    """`ttft=500,tpot=50,e2e=4000` (milliseconds) → {"ttft": 500, "tpot": 50, "e2el": 4000}."""
    slo = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\w+)\s*=\s*([0-9.]+)", part)
        if not m or m.group(1) not in SLO_KEYS:
            raise ValueError(f"--slo {part!r}: expected ttft=MS, tpot=MS or e2e=MS")
        slo[SLO_KEYS[m.group(1)]] = float(m.group(2))
    return slo


def tpot_s(r: LoadRecord) -> float | None:
    """Time per output token after the first, as vllm bench defines it."""
    n = r.completion_tokens or 0
    if n < 2 or r.e2e_s is None or r.ttft_s is None:
        return None
    return (r.e2e_s - r.ttft_s) / (n - 1)


def describe(name: str, values_s: Sequence[float]) -> dict[str, float | None]:
    """mean / median / std (population, as numpy) and percentiles, in milliseconds."""
    ms = [v * 1000 for v in values_s]
    out: dict[str, float | None] = {
        f"mean_{name}_ms": statistics.fmean(ms) if ms else None,
        f"median_{name}_ms": statistics.median(ms) if ms else None,
        f"std_{name}_ms": statistics.pstdev(ms) if ms else None,
    }
    out |= {f"p{p}_{name}_ms": percentile(ms, p) for p in PERCENTILES}
    return out


def _good(r: LoadRecord, slo: dict[str, float]) -> bool:
    measured = {"ttft": r.ttft_s, "tpot": tpot_s(r) or 0.0, "e2el": r.e2e_s}
    return all(measured[k] is not None and measured[k] * 1000 <= limit for k, limit in slo.items())


def summarize_run(run: LoadRun, slo: dict[str, float] | None = None) -> dict[str, Any]:
    """One load level: vllm bench's keys for the measured requests, plus errors by kind and the shape."""
    measured = run.measured
    ok = [r for r in measured if r.ok]
    starts = [r.start_s for r in measured if r.start_s is not None]
    ends = [r.start_s + r.e2e_s for r in measured if r.start_s is not None and r.e2e_s is not None]
    duration = (max(ends) - min(starts)) if starts and ends else 0.0
    out_tokens = sum(r.completion_tokens or 0 for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    result: dict[str, Any] = {
        "shape": run.shape.label,
        "concurrency": run.shape.concurrency,
        "request_rate": run.shape.rate,
        "burstiness": run.shape.burstiness,
        "duration": duration,
        "completed": len(ok),
        "failed": len(measured) - len(ok),
        "errors_by_kind": dict(Counter(r.error_kind for r in measured if not r.ok)),
        "excluded": len(run.records) - len(measured),
        "total_input_tokens": in_tokens,
        "total_output_tokens": out_tokens,
        "request_throughput": per_s(len(ok)),
        "request_goodput": per_s(sum(_good(r, slo) for r in ok)) if slo else None,
        "output_throughput": per_s(out_tokens),
        "total_token_throughput": per_s(in_tokens + out_tokens),
    }
    result |= describe("ttft", [r.ttft_s for r in ok if r.ttft_s is not None])
    result |= describe("tpot", [t for r in ok if (t := tpot_s(r)) is not None])
    result |= describe("itl", [gap for r in ok for gap in r.itl_s])
    result |= describe("e2el", [r.e2e_s for r in ok if r.e2e_s is not None])
    return result


def knee(levels: Sequence[dict[str, Any]], share: float = 0.9) -> int | None:
    """The lowest concurrency that reaches `share` of the sweep's best output throughput: past it, more
    concurrency mostly buys latency."""
    points = sorted((lv["concurrency"], lv["output_throughput"]) for lv in levels if lv.get("concurrency"))
    if not points:
        return None
    best = max(t for _, t in points)
    return next(c for c, t in points if t >= share * best)


def write_csv(path: Path, levels: Sequence[dict[str, Any]]) -> None:
    """One row per load level, every scalar key (lists and mappings are left to the JSON)."""
    keys = [k for k, v in levels[0].items() if not isinstance(v, dict | list)] if levels else []
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(levels)


LOAD_COLUMNS = (
    ("load", "shape"),
    ("ok", "completed"),
    ("failed", "failed"),
    ("req/s", "request_throughput"),
    ("out tok/s", "output_throughput"),
    ("TTFT p50 ms", "median_ttft_ms"),
    ("TTFT p99 ms", "p99_ttft_ms"),
    ("TPOT p50 ms", "median_tpot_ms"),
    ("ITL p50 ms", "median_itl_ms"),
    ("ITL p99 ms", "p99_itl_ms"),
    ("E2E p50 ms", "median_e2el_ms"),
    ("goodput req/s", "request_goodput"),
)


def _cell(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def load_table(result: dict) -> Table:
    """`ladder bench`'s levels in the terminal, with the sweep's knee in the title."""
    knee = result.get("knee_concurrency")
    title = f"ladder bench: {result['model']}" + (f" (knee at concurrency {knee})" if knee else "")
    table = Table(*(c for c, _ in LOAD_COLUMNS), title=title)
    for level in result["levels"]:
        table.add_row(*level_cells(level))
    return table


def level_cells(level: dict[str, Any]) -> list[str]:
    return [_cell(level.get(key)) for _, key in LOAD_COLUMNS]
