"""Benchmark: `ladder fleet` scaling on a local Ray cluster of simulated nodes (issue 19).

1. Spread: a plan of R rungs on the fake engine, each a fixed ~S seconds (its startup sleeps: the machine's two
   cores are not what is measured), climbed with `--mode spread` over N = 1, 2, 4 nodes: wall time and speedup.
   Target: 4 nodes ≥ 3.5× faster than one. The N simulated nodes share this machine's cores, which real nodes do
   not: the plan states the memory bandwidth (`memory_bandwidth_gbs`) so that cells do not each run the 2-second,
   all-core bandwidth measurement at once. Every other per-cell cost stays in: a fresh Ray worker and its imports,
   the engine's start and stop, the requests, the merge and the finish on the driver.
2. Push, measured: a 100 MB model entry pushed over Ray to N = 1..4 local nodes (loopback: no link limit, so this
   shows the mechanism's own cost, not a network's).
3. Push, simulated: fanout.simulate_push, a discrete-event model of per-node uplinks (1 Gbit/s, 8 MiB chunks),
   tree (pipelined, fan-out 2) vs star, N = 1..60. Target: 60 nodes ≤ 3× the time of one. Labelled a model: 60
   nodes do not fit two cores.

Runs itself inside a private network namespace with only loopback (testing/ray_cluster.py); needs root.

    .venv/bin/python bench/fleet_scaling.py [--rungs 8] [--seconds 60] [--nodes 1,2,4] [--push-mb 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llm_ladder.testing.ray_cluster import in_netns, in_private_netns, local_cluster, netns_unavailable

GBIT = 125e6


def spread_seconds(nodes: int, rungs: int, seconds: float, root: Path) -> float:
    from llm_ladder.fleet import climb as fleet
    from llm_ladder.fleet.connect import alive_nodes, connect
    from llm_ladder.plan.schema import Plan

    model = root / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    plan = Plan.model_validate({
        "name": "bench-fleet", "engine": "fake-vllm", "trials": 1, "memory_bandwidth_gbs": 100,
        "workloads": [{"name": "long", "prompt": "p", "max_tokens": 16}],
        "rungs": [{"name": f"r{i}", "model": str(model), "extra_args": ["--startup-s", str(seconds)]}
                  for i in range(rungs)],
    })  # fmt: skip
    with local_cluster(nodes) as cluster:
        connect(cluster.address)
        live = alive_nodes()
        out = root / f"spread-{nodes}"
        run = fleet.start(plan, live, out, "spread", 3600)
        start = time.monotonic()
        result = fleet.climb(plan, run, live, out, lambda _: None, None)
        took = time.monotonic() - start
    assert all(c.status == "ok" for c in result.cells), result.cells
    return took


def push_seconds(nodes: int, megabytes: int, root: Path) -> tuple[float, float]:
    from llm_ladder.fleet.connect import alive_nodes, connect
    from llm_ladder.fleet.push import push_model
    from llm_ladder.models.store import COMPLETE_MARKER, ModelStore

    source = ModelStore(root / "source")
    entry = source.path("bench-model")
    if not entry.exists():
        entry.mkdir(parents=True)
        (entry / "config.json").write_text("{}")
        (entry / "model.safetensors").write_bytes(os.urandom(megabytes * 2**20))
        (entry / COMPLETE_MARKER).write_text("ok\n")
    stores = root / f"stores-{nodes}"
    with local_cluster(nodes, node_env=lambda i: {"LADDER_MODELS_DIR": str(stores / f"node{i}")}) as cluster:
        connect(cluster.address)
        start = time.monotonic()
        report = push_model("bench-model", source, alive_nodes(), parallel=2, notify=lambda _: None)
        took = time.monotonic() - start
    assert not report.failed, report
    return took, max(n.seconds for n in report.nodes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rungs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0, help="each rung's fixed time (fake engine startup)")
    p.add_argument("--nodes", default="1,2,4")
    p.add_argument("--push-mb", type=int, default=100)
    p.add_argument("--push-nodes", default="1,2,4")
    args = p.parse_args()
    if not in_private_netns():
        if why := netns_unavailable():
            sys.exit(f"error: the benchmark needs a private network namespace: {why}")
        sys.exit(subprocess.run(in_netns([sys.executable, *sys.argv])).returncode)
    console = Console()
    isa = sorted(set(Path("/proc/cpuinfo").read_text().split()) & {"avx2", "avx512f", "amx_int8"})
    console.print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {' '.join(isa)}")
    with tempfile.TemporaryDirectory(prefix="ladder-bench-fleet-") as tmp:
        root = Path(tmp)
        spread = {n: spread_seconds(n, args.rungs, args.seconds, root) for n in map(int, args.nodes.split(","))}
        table = Table(title=f"spread: {args.rungs} rungs of ~{args.seconds:.0f} s (fake engine)")
        for col in ("nodes", "wall s", "speedup", "target"):
            table.add_column(col)
        for n, s in spread.items():
            target = "≥ 3.5×" if n == 4 else ""
            table.add_row(str(n), f"{s:.1f}", f"{spread[min(spread)] / s:.2f}×", target)
        console.print(table)
        measured = {n: push_seconds(n, args.push_mb, root) for n in map(int, args.push_nodes.split(","))}
        table = Table(title=f"push, measured: {args.push_mb} MB over loopback (no link limit: the mechanism's cost)")
        for col in ("nodes", "push s", "slowest node s"):
            table.add_column(col)
        for n, (total, slowest) in measured.items():
            table.add_row(str(n), f"{total:.1f}", f"{slowest:.1f}")
        console.print(table)
    simulated(console, args.push_mb)


def simulated(console: Console, megabytes: int) -> None:
    from llm_ladder.fleet.fanout import simulate_push

    size = megabytes * 1e6
    table = Table(title=f"push, SIMULATED (a model): {megabytes} MB, 1 Gbit/s uplink per node, 8 MiB chunks, fan-out 2")
    for col in ("nodes", "star s", "tree s", "tree ÷ one node", "target"):
        table.add_column(col)
    one = simulate_push(1, size, GBIT, "tree")
    for n in (1, 4, 16, 60):
        star, tree = simulate_push(n, size, GBIT, "star"), simulate_push(n, size, GBIT, "tree")
        table.add_row(str(n), f"{star:.2f}", f"{tree:.2f}", f"{tree / one:.2f}×", "≤ 3×" if n == 60 else "")
    console.print(table)


if __name__ == "__main__":
    main()
