"""fleet.md: which node climbed what and how it ended; for `each`, one row per device and where devices differ."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_ladder.fleet.aggregate import FleetAggregate

if TYPE_CHECKING:
    from llm_ladder.fleet.climb import FleetResult


def to_markdown(result: FleetResult) -> str:
    run = result.settings
    lines = [f"# Fleet climb: {run.plan} ({run.mode}, {len(run.nodes)} node(s): {', '.join(run.nodes)})", ""]
    lines += _cells(result)
    if result.aggregate is not None:
        lines += _devices(result.aggregate) + _stats(result.aggregate) + _findings(result.aggregate)
    elif "fleet" in result.summaries and (rec := result.summaries["fleet"].recommendation):
        lines += ["", f"**Recommendation:** {rec.summary}", "", "The merged run: summary.md, results.json."]
    return "\n".join(lines) + "\n"


def _cells(result: FleetResult) -> list[str]:
    rows = ["## Cells", "", "| rung | node | status | seconds | reason |", "|---|---|---|---|---|"]
    rows += [f"| {c.rung} | {c.node or '-'} | {c.status} | {c.seconds:.0f} | {(c.reason or '').replace('|', '/')} |"
             for c in result.cells]  # fmt: skip
    return rows


def _devices(agg: FleetAggregate) -> list[str]:
    rungs = list(dict.fromkeys(r for row in agg.devices.values() for r in row))
    metric = next((m for by in agg.stats.values() for m in by if m.endswith("decode tok/s")), None)
    flagged = {(o.node, o.rung) for o in agg.outliers}
    head = f"## Devices ({metric or 'status'} per rung; ⚠ an outlier on some metric)"
    rows = ["", head, "", "| device | " + " | ".join(rungs) + " | recommends |", "|---|" + "---|" * (len(rungs) + 1)]
    for node, by_rung in agg.devices.items():
        cells = [_cell(by_rung.get(r), metric) + (" ⚠" if (node, r) in flagged else "") for r in rungs]
        rows.append(f"| {node} | " + " | ".join(cells) + f" | {agg.recommended.get(node) or 'none'} |")
    return rows


def _cell(row: dict | None, metric: str | None) -> str:
    if row is None:
        return "-"
    if row["status"] != "ok":
        return row["status"]
    return f"{row[metric]:.1f}" if metric and metric in row else "ok"


def _stats(agg: FleetAggregate) -> list[str]:
    rows = [
        "",
        "## Across devices",
        "",
        "| rung | metric | median | p10 | p90 | devices |",
        "|---|---|---|---|---|---|",
    ]
    for rung, by in agg.stats.items():
        rows += [f"| {rung} | {m} | {s.median:.4g} | {s.p10:.4g} | {s.p90:.4g} | {s.n} |" for m, s in by.items()]
    return rows


def _findings(agg: FleetAggregate) -> list[str]:
    rows = ["", "## Outliers", ""]
    rows += [f"- {o.describe()}" for o in agg.outliers] or ["- none (fewer than 3 devices cannot have one)"
                                                             if max((s.n for by in agg.stats.values()
                                                                     for s in by.values()), default=0) < 3
                                                             else "- none"]  # fmt: skip
    rows += ["", "## Versions that differ between nodes", ""]
    rows += [f"- {p}: " + ", ".join(f"{n} {v}" for n, v in by.items()) for p, by in agg.versions.items()] or ["- none"]
    return rows
