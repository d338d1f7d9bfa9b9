"""`ladder fleet climb` on a local Ray cluster of simulated nodes (the fake engine: a real process per rung)."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.vllm import RUN_MARKER
from llm_ladder.fleet.connect import connect
from llm_ladder.outputs.results import RunSummary
from llm_ladder.testing.ray_cluster import add_node, local_cluster

runner = CliRunner()
SLOW_NODE = 3


def _node_env(i):
    return {"LADDER_MOCK_SLOWDOWN": "4"} if i == SLOW_NODE else {}


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(3, node_env=_node_env) as c:
        connect(c.address)
        yield c


def _plan(tmp_path, model_dir, rungs=3, startup_s=1.0):
    names = ["base", "int8", "int4", "spec"][:rungs]
    plan = {
        "name": "fleet-fake",
        "engine": "fake-vllm",
        "trials": 2,
        "workloads": [{"name": "long", "prompt": "more", "max_tokens": 24}],
        "rungs": [{"name": n, "model": str(model_dir), "extra_args": ["--startup-s", str(startup_s)]} for n in names],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _fleet(*args):
    return runner.invoke(app, ["fleet", "climb", *map(str, args)], catch_exceptions=False)


def _engines():
    """Engine processes a fleet cell started (their run dir is under the fleet's cell root): pid → run dir."""
    found = {}
    for p in psutil.process_iter():
        try:
            if "ladder-fleet" in (run := p.environ().get(RUN_MARKER, "")):
                found[p.pid] = run
        except psutil.Error:
            pass
    return found


def _leftovers():
    return sorted(_engines())


def _ladder(*args):
    ladder = os.path.join(os.path.dirname(sys.executable), "ladder")
    return subprocess.Popen([ladder, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_ctrl_c_reaches_it)  # fmt: skip


def _ctrl_c_reaches_it():
    """A test run in the background ignores SIGINT, and so would the child: Python then never raises Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_cells(n, proc, timeout=90.0):
    """Until `n` cells have an engine running."""
    deadline = time.monotonic() + timeout
    while len(set(_engines().values())) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{n} cells did not start: {proc.stdout.read() if proc.poll() is not None else ''}")
        time.sleep(0.3)


def _summary(path):
    return RunSummary.model_validate_json((path / "results.json").read_text())


def test_spread_climbs_the_rungs_on_different_nodes_into_one_run_directory(cluster, tmp_path, model_dir):
    out = tmp_path / "spread"
    r = _fleet(_plan(tmp_path, model_dir), "--address", cluster.address, "--nodes", "node1,node2", "--out", out)
    assert r.exit_code == 0, r.output
    summary = _summary(out)
    assert [x.name for x in summary.rungs] == ["base", "int8", "int4"] and not summary.failed
    assert {x.node["name"] for x in summary.rungs} == {"node1", "node2"}
    assert all(x.node["packages"]["ray"].startswith("2.") and x.node["hardware"] for x in summary.rungs)
    assert summary.host["hardware"] == summary.rungs[0].node["hardware"], "the machine the rungs ran on"
    assert all(x.agreement is not None for x in summary.rungs[1:]), "computed after the merge, against base"
    assert summary.recommendation and summary.recommendation.rung
    assert (out / "logs" / "int4.log").is_file() and (out / "logprobs" / "base.json").is_file()
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert sorted(c["rung"] for c in cells) == ["base", "int4", "int8"] and {c["status"] for c in cells} == {"ok"}
    report = runner.invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert not _leftovers()


def test_each_climbs_the_plan_on_every_node_and_flags_the_slow_one(cluster, tmp_path, model_dir):
    out = tmp_path / "each"
    r = _fleet(
        _plan(tmp_path, model_dir, rungs=2, startup_s=0.2), "--address", cluster.address, "--mode", "each", "--out", out
    )
    assert r.exit_code == 0, r.output
    for node in ("node1", "node2", "node3"):
        summary = _summary(out / "nodes" / node)
        assert [x.name for x in summary.rungs] == ["base", "int8"] and not summary.failed
        assert {x.node["name"] for x in summary.rungs} == {node}
    fleet = json.loads((out / "fleet.json").read_text())["aggregate"]
    stat = fleet["stats"]["int8"]["long decode tok/s"]
    assert stat["n"] == 3 and stat["p10"] <= stat["median"] <= stat["p90"]
    slow = {(o["node"], o["metric"]) for o in fleet["outliers"]}
    assert ("node3", "long decode tok/s") in slow, fleet["outliers"]
    assert not {n for n, _ in slow} - {"node3"}, "only the lagging node stands out"
    md = (out / "fleet.md").read_text()
    assert "| node3 |" in md and "⚠" in md


def test_doctor_fleet_lists_every_node_with_its_device_and_memory(cluster):
    r = runner.invoke(app, ["doctor", "--fleet", "--address", cluster.address, "--json"])
    assert r.exit_code == 0, r.output
    checks = {c["name"]: c for c in json.loads(r.output)}
    assert checks["cluster"]["message"].startswith("3 node(s)")
    assert {"node node1", "node node2", "node node3"} <= set(checks)
    assert "1 device device(s)" in checks["node node1"]["message"] and "GiB free" in checks["node node1"]["message"]
    assert checks["versions"]["status"] == "ok" and "ray 2." in checks["versions"]["message"]


def test_a_node_lost_mid_climb_leaves_its_cells_unreachable_and_resume_runs_only_those(cluster, tmp_path, model_dir):
    doomed = add_node(cluster, 4)
    cluster.wait_for_nodes()
    out, plan = tmp_path / "lost", _plan(tmp_path, model_dir, rungs=4, startup_s=6)
    nodes = "node1,node2,node4"
    proc = _ladder("fleet", "climb", plan, "--address", cluster.address, "--nodes", nodes, "--out", out)
    _wait_for_cells(3, proc)
    time.sleep(1)
    cluster.remove_node(doomed, allow_graceful=False)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    lost = [c for c in cells if c["status"] == "unreachable"]
    assert lost and {c["node"] for c in lost} == {"node4"} and "lost" in lost[0]["reason"], cells
    assert {c["status"] for c in cells if c["node"] != "node4"} == {"ok"}
    summary = _summary(out)
    assert {x.name: x.status for x in summary.rungs}[lost[0]["rung"]] == "unreachable"
    time.sleep(2)  # the parent guard's SIGTERM, then the mock server's exit
    assert not _leftovers(), "the lost node's engine outlived its worker"

    again = _fleet(plan, "--address", cluster.address, "--resume", out)
    assert again.exit_code == 0, again.output
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    rerun = cells[len(cells) - len(lost) :]
    assert [c["rung"] for c in rerun] == [c["rung"] for c in lost] and {c["status"] for c in rerun} == {"ok"}
    assert not _summary(out).failed


def test_ctrl_c_cancels_the_cells_and_leaves_no_engine_running(cluster, tmp_path, model_dir):
    out, plan = tmp_path / "interrupted", _plan(tmp_path, model_dir, rungs=2, startup_s=20)
    proc = _ladder("fleet", "climb", plan, "--address", cluster.address, "--nodes", "node1,node2", "--out", out)
    _wait_for_cells(2, proc)
    os.kill(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    time.sleep(1)
    assert not _leftovers()
