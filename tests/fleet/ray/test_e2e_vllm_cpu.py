"""`ladder fleet climb` with real vLLM CPU servers on two simulated nodes of one machine (each pinned to its own
core), in both modes: bf16 and int4 spread over the nodes, then int4 on each node."""

import importlib.util
import json
import subprocess
import sys

import pytest

from llm_ladder.cli.plan import machine_plan
from llm_ladder.models.store import ModelStore, resolve_models
from llm_ladder.outputs.results import RunSummary
from llm_ladder.testing.ray_cluster import local_cluster
from tests.e2e.test_climb_cpu import quick_plan

from .test_fleet_climb import _leftovers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed"),
]


def _plan(tmp_path):
    plan = machine_plan(None, None)
    resolve_models(plan.select([plan.baseline.name]), ModelStore())  # made once here, not by two nodes at once
    rungs = [r.model_dump(exclude_defaults=True) | {"enforce_eager": True}
             for r in plan.rungs if r.name in (plan.baseline.name, "int4")]  # fmt: skip
    for r in rungs:
        r["env"] = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    return quick_plan(tmp_path, "smollm2-fleet-e2e", rungs, {"max_tokens": 48})


def _fleet(*args):
    run = subprocess.run([sys.executable, "-m", "llm_ladder", "fleet", "climb", *map(str, args)],
                         capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]


@pytest.mark.timeout(1800)
def test_fleet_climb_on_vllm_cpu_spread_and_each(tmp_path):
    plan = _plan(tmp_path)
    with local_cluster(2, node_env=lambda i: {"VLLM_CPU_OMP_THREADS_BIND": str(i - 1)}) as cluster:
        _fleet(plan, "--address", cluster.address, "--out", tmp_path / "spread")
        summary = RunSummary.model_validate_json((tmp_path / "spread" / "results.json").read_text())
        assert not summary.failed and len(summary.rungs) == 2
        assert {r.node["name"] for r in summary.rungs} == {"node1", "node2"}
        int4 = summary.rungs[1]
        assert int4.agreement and int4.agreement.same_top > 0.5, "measured against bf16 after the merge"
        assert int4.decode_tps("long") and summary.recommendation.rung

        _fleet(plan, "--address", cluster.address, "--mode", "each", "--rung", "int4", "--out", tmp_path / "each")
        fleet = json.loads((tmp_path / "each" / "fleet.json").read_text())["aggregate"]
        assert fleet["stats"]["int4"]["long decode tok/s"]["n"] == 2
        assert set(fleet["devices"]) == {"node1", "node2"}
    assert not _leftovers()
