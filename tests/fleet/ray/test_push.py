"""`push_model` on a local 3-node Ray cluster (loopback only), each node with its own model store under tmp.

The tests share one cluster and run in order: a first push, a second one that copies nothing, a corruption that the
next push repairs, and last a node removed before a push (it does not come back)."""

import os
import threading
import time

import pytest

from llm_ladder.fleet.connect import alive_nodes, connect
from llm_ladder.fleet.manifest import MANIFEST_FILE, read_manifest, verify
from llm_ladder.fleet.push import push_model, verify_entry
from llm_ladder.models.store import COMPLETE_MARKER, ModelStore
from llm_ladder.testing.ray_cluster import local_cluster

MODEL = "fake-20mb"


def make_entry(store: ModelStore, name: str, size: int) -> None:
    d = store.path(name)
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "llama", "hidden_size": 64}')
    (d / "model.safetensors").write_bytes(os.urandom(size))
    (d / "sub" / "tokenizer.json").write_text('{"version": "1.0"}')
    (d / COMPLETE_MARKER).write_text("ok\n")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    base = tmp_path_factory.mktemp("stores")
    with local_cluster(3, node_env=lambda i: {"LADDER_MODELS_DIR": str(base / f"node{i}")}) as cluster:
        connect(cluster.address)
        store = ModelStore(base / "driver")
        make_entry(store, MODEL, 20 * 2**20 + 12345)  # 3 chunks, the last one partial
        yield cluster, store, base, alive_nodes()


@pytest.fixture(scope="module")
def pushed(fleet):
    _, store, _, nodes = fleet
    return push_model(MODEL, store, nodes, parallel=2, timeout_s=120, notify=lambda _: None)


def files_of(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_push_copies_the_entry_byte_identical_with_its_manifest_through_the_tree(fleet, pushed):
    _, store, base, nodes = fleet
    report = pushed
    assert [n.name for n in nodes] == ["node1", "node2", "node3"]
    assert [r.status for r in report.nodes] == ["copied"] * 3, report
    sources = {r.node: r.source for r in report.nodes}
    assert sources["node3"] == "node1" and sources["node1"] == sources["node2"] != "node1"  # fan-out 2
    source_files = files_of(store.path(MODEL))
    manifest = read_manifest(store.path(MODEL))
    assert manifest is not None and report.manifest_sha == manifest.sha256
    assert report.bytes == manifest.total_bytes and all(r.bytes == report.bytes for r in report.nodes)
    for i in (1, 2, 3):
        entry = base / f"node{i}" / MODEL
        assert files_of(entry) == source_files
        assert verify(entry, manifest, full=True) == [] and verify_entry(entry) == []
        assert sorted(p.name for p in entry.parent.iterdir()) == [MODEL]  # no .partial left behind
    assert MANIFEST_FILE in source_files


def test_a_second_push_copies_nothing(fleet, pushed):
    _, store, _, nodes = fleet
    report = push_model(MODEL, store, nodes, timeout_s=120, notify=lambda _: None)
    assert [(r.status, r.bytes, r.reason) for r in report.nodes] == [("present", 0, None)] * 3


def test_a_corrupted_file_is_named_and_repaired_by_the_next_push(fleet, pushed):
    _, store, base, nodes = fleet
    lines = []
    truncated = base / "node2" / MODEL / "model.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:-1])
    assert verify_entry(truncated.parent) == [f"model.safetensors: size {20 * 2**20 + 12344} != {20 * 2**20 + 12345}"]
    report = push_model(MODEL, store, nodes, timeout_s=120, notify=lines.append)
    rows = {r.node: r for r in report.nodes}
    assert rows["node2"].status == "copied" and "model.safetensors: size" in rows["node2"].reason
    assert rows["node1"].status == rows["node3"].status == "present"
    assert files_of(truncated.parent) == files_of(store.path(MODEL))
    assert any(line.startswith("node2: copied") and "model.safetensors" in line for line in lines)


def test_a_flipped_byte_needs_the_full_check(fleet, pushed):
    _, store, base, nodes = fleet
    config = base / "node3" / MODEL / "config.json"
    config.write_text(config.read_text().replace("64", "65"))
    quick = push_model(MODEL, store, nodes, timeout_s=120, notify=lambda _: None)
    assert {r.status for r in quick.nodes} == {"present"}  # sizes match: the cheap check cannot see it
    full = push_model(MODEL, store, nodes, timeout_s=120, notify=lambda _: None, full_check=True)
    rows = {r.node: r for r in full.nodes}
    assert rows["node3"].status == "copied" and "config.json: sha256 differs" in rows["node3"].reason
    assert files_of(config.parent) == files_of(store.path(MODEL))


def test_a_dead_node_fails_with_a_reason_and_the_others_get_the_model(fleet, pushed):
    cluster, store, base, nodes = fleet
    victim = next(n for n in nodes if n.name == "node1")  # a parent in the tree: its subtree must move
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == victim.node_id), allow_graceful=False)
    make_entry(store, "other", 5 * 2**20)
    start = time.monotonic()
    report = push_model("other", store, nodes, parallel=1, timeout_s=120, notify=lambda _: None)
    rows = {r.node: r for r in report.nodes}
    assert rows["node1"].status == "failed" and rows["node1"].reason, report
    assert rows["node2"].status == rows["node3"].status == "copied", report
    assert rows["node2"].source != "node1" and rows["node3"].source != "node1"
    assert files_of(base / "node3" / "other") == files_of(store.path("other"))
    assert time.monotonic() - start < 60  # failed fast, not at the probe's timeout


def test_a_parent_that_dies_mid_copy_hands_its_child_to_the_source(fleet, pushed):
    cluster, store, base, _ = fleet
    parent, child = (next(n for n in alive_nodes() if n.name == name) for name in ("node2", "node3"))
    make_entry(store, "chain", 60 * 2**20)
    receiving = base / "node3" / ".chain.partial" / "model.safetensors"

    def kill_parent_once_the_child_receives():
        while not (receiving.exists() and receiving.stat().st_size >= 8 * 2**20):
            time.sleep(0.02)
        cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == parent.node_id), allow_graceful=False)

    killer = threading.Thread(target=kill_parent_once_the_child_receives, daemon=True)
    killer.start()
    lines = []
    report = push_model("chain", store, [parent, child], parallel=1, timeout_s=120, notify=lines.append)
    killer.join(timeout=5)
    rows = {r.node: r for r in report.nodes}
    assert rows["node2"].status == "failed" and rows["node2"].reason, report
    assert rows["node3"].status == "copied" and rows["node3"].source != "node2", report
    assert any(line.startswith("node3: lost node2") for line in lines), lines
    assert files_of(base / "node3" / "chain") == files_of(store.path("chain"))
