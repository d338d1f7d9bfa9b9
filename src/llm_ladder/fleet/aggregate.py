"""`--mode each`: the same plan on every device, read side by side. Per rung and metric the median and p10/p90
across devices, and the devices that stand out: a board in a lower power mode, throttling, or with another install
gives numbers the rest of the fleet does not.

A device is an outlier on a metric when it lies more than OUTLIER_Z robust standard deviations from the median of
the *other* devices (leave-one-out, so the outlier does not widen its own yardstick). The scale is 1.4826 × MAD,
floored per metric (FLOORS): with a handful of devices the MAD of near-equal values is near zero, and a uniform
fleet must not flag its wobbles. Rates and latencies: 5% of the median, so a device about 18% off is flagged (a
Jetson in a lower power mode runs 30-50% slower); startup: 20% and 2 s (compile caches, disks); memory: 5% and
0.25 GiB; agreement's same-top share: 0.01.
"""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import BaseModel

from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.plan.hardware import PACKAGES

OUTLIER_Z = 3.5
FLOORS = {"tok/s": (0.05, 0.0), "ms": (0.05, 0.0), "startup s": (0.2, 2.0), "GiB": (0.05, 0.25), "same top": (0, 0.01)}
"""Metric name ending → (share of the others' median, absolute) below which the robust scale is not taken."""
MIN_DEVICES = 3
"""Below three devices there are no "others" to stand out from."""
VERSIONS = (*PACKAGES, "python", "driver", "ray", "llm-ladder")


class Stat(BaseModel):
    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        if len(values) == 1:
            return cls(median=values[0], p10=values[0], p90=values[0], n=1)
        deciles = statistics.quantiles(values, n=10, method="inclusive")
        return cls(median=statistics.median(values), p10=deciles[0], p90=deciles[-1], n=len(values))


class Outlier(BaseModel):
    node: str
    rung: str
    metric: str
    value: float
    others_median: float
    z: float

    def describe(self) -> str:
        ratio = self.value / self.others_median if self.others_median else float("nan")
        return (f"{self.node}: {self.rung} {self.metric} {self.value:.4g} against the others' median "
                f"{self.others_median:.4g} ({ratio:.2f}×, {self.z:+.1f} robust SD)")  # fmt: skip


class FleetAggregate(BaseModel):
    devices: dict[str, dict[str, dict[str, Any]]]
    """node → rung → {status, recommended, metric: value}: one row per device."""
    stats: dict[str, dict[str, Stat]]
    """rung → metric → median and p10/p90 across the devices that climbed it."""
    outliers: list[Outlier]
    versions: dict[str, dict[str, str]]
    """Versions that differ between nodes: package → node → version (numbers across them are not comparable)."""
    recommended: dict[str, str | None]


def metrics(result: RungResult) -> dict[str, float]:
    """The figures compared across devices: decode tok/s and TTFT per workload, startup, peak memory, agreement."""
    found: dict[str, float] = {}
    for name, stats in result.workloads.items():
        if stats.decode_tps:
            found[f"{name} decode tok/s"] = stats.decode_tps.median
        if stats.ttft_ms:
            found[f"{name} TTFT ms"] = stats.ttft_ms.median
    if result.startup and result.startup.total_s is not None:
        found["startup s"] = result.startup.total_s
    memory = result.memory
    if memory and (peak := memory.gpu_peak_gib or memory.peak_rss_gib):
        found["peak memory GiB"] = peak
    if result.agreement:
        found["same top"] = result.agreement.same_top
    return found


def aggregate(summaries: dict[str, RunSummary]) -> FleetAggregate:
    devices: dict[str, dict[str, dict[str, Any]]] = {}
    values: dict[str, dict[str, dict[str, float]]] = {}  # rung → metric → node → value
    for node, summary in summaries.items():
        devices[node] = {}
        for r in summary.rungs:
            row = metrics(r) if r.status == "ok" else {}
            devices[node][r.name] = {"status": r.status, **row}
            for metric, value in row.items():
                values.setdefault(r.name, {}).setdefault(metric, {})[node] = value
    stats = {rung: {m: Stat.of(list(v.values())) for m, v in by.items()} for rung, by in values.items()}
    outliers = [o for rung, by in values.items() for m, v in by.items() for o in _outliers(rung, m, v)]
    recommended = {n: s.recommendation.rung if s.recommendation else None for n, s in summaries.items()}
    return FleetAggregate(devices=devices, stats=stats, outliers=outliers, versions=differing_versions(summaries),
                          recommended=recommended)  # fmt: skip


def _outliers(rung: str, metric: str, by_node: dict[str, float]) -> list[Outlier]:
    if len(by_node) < MIN_DEVICES:
        return []
    found = []
    for node, value in by_node.items():
        others = [v for n, v in by_node.items() if n != node]
        mid = statistics.median(others)
        mad = statistics.median(abs(v - mid) for v in others)
        relative, absolute = next((f for end, f in FLOORS.items() if metric.endswith(end)), (0.05, 0.0))
        scale = max(1.4826 * mad, relative * abs(mid), absolute, 1e-12)
        if abs(z := (value - mid) / scale) > OUTLIER_Z:
            found.append(Outlier(node=node, rung=rung, metric=metric, value=value, others_median=mid, z=round(z, 1)))
    return found


def node_versions(host: dict[str, Any]) -> dict[str, str]:
    packages = dict(host.get("packages", {}))
    extra = {"python": host.get("python"), "driver": host.get("driver")}
    return {k: str(v) for k, v in (packages | extra).items() if v and k in VERSIONS}


def differing_versions(summaries: dict[str, RunSummary]) -> dict[str, dict[str, str]]:
    """Versions from each node's rung fingerprints (the node's own, not the driver's) that differ across nodes."""
    by_node = {n: node_versions(_node_host(s)) for n, s in summaries.items()}
    return versions_differing(by_node)


def versions_differing(by_node: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    packages = sorted({p for v in by_node.values() for p in v})
    table = {p: {n: v.get(p, "absent") for n, v in by_node.items()} for p in packages}
    return {p: row for p, row in table.items() if len(set(row.values())) > 1}


def _node_host(summary: RunSummary) -> dict[str, Any]:
    return next((r.node for r in summary.rungs if r.node and r.node.get("packages")), {}) or {}
