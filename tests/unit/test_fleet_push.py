"""The push's pure parts, without Ray: the sha256 manifest, the fan-out tree and its repair, the push-time model."""

import json

import pytest

from llm_ladder.fleet.fanout import ancestors, live_parent, plan_tree, reparent, simulate_push
from llm_ladder.fleet.manifest import (
    MANIFEST_FILE,
    build_manifest,
    current_manifest,
    read_manifest,
    verify,
    write_manifest,
)
from llm_ladder.fleet.push import verify_entry

MB = 1_000_000
GBIT = 125_000_000  # bytes/s


@pytest.fixture
def entry(tmp_path):
    d = tmp_path / "tiny"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 100)
    (d / "sub" / "tokenizer.json").write_text("{}")
    (d / "empty.txt").write_bytes(b"")
    return d


def test_manifest_lists_every_file_with_size_and_digest_and_is_stable(entry):
    m = build_manifest(entry)
    assert sorted(m.files) == ["config.json", "empty.txt", "model.safetensors", "sub/tokenizer.json"]
    assert m.files["model.safetensors"].size == 25600
    assert m.total_bytes == sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
    write_manifest(entry, m)
    again = build_manifest(entry)  # the manifest file itself is left out
    assert again == m and read_manifest(entry) == m
    assert verify(entry, m) == []


def test_verify_names_a_corrupted_byte_a_missing_file_a_size_and_an_extra(entry):
    m = build_manifest(entry)
    data = bytearray((entry / "model.safetensors").read_bytes())
    data[1234] ^= 0xFF
    (entry / "model.safetensors").write_bytes(bytes(data))
    assert verify(entry, m) == ["model.safetensors: sha256 differs"]
    assert verify(entry, m, full=False) == []  # the cheap check sees sizes only
    (entry / "config.json").unlink()
    (entry / "sub" / "tokenizer.json").write_text("{} ")
    (entry / "stray.bin").write_bytes(b"x")
    assert verify(entry, m, full=False) == [
        "config.json: missing",
        "sub/tokenizer.json: size 3 != 2",
        "stray.bin: not in the manifest",
    ]


def test_manifest_sha_changes_with_content_and_a_tampered_manifest_is_refused(entry):
    m = build_manifest(entry)
    (entry / "config.json").write_text("{}")
    assert build_manifest(entry).sha256 != m.sha256
    write_manifest(entry, m)
    raw = json.loads((entry / MANIFEST_FILE).read_text())
    raw["files"]["config.json"]["size"] = 1
    (entry / MANIFEST_FILE).write_text(json.dumps(raw))
    assert read_manifest(entry) is None
    assert verify_entry(entry) == [f"{MANIFEST_FILE}: unreadable or inconsistent"]


def test_current_manifest_is_reused_until_a_file_changes(entry):
    first = current_manifest(entry)
    assert read_manifest(entry) == first and current_manifest(entry) == first
    (entry / "config.json").write_text('{"model_type": "qwen2"}')
    assert current_manifest(entry).sha256 != first.sha256


def test_verify_entry_checks_sizes_against_the_pushed_manifest(entry):
    assert verify_entry(entry) == []  # no manifest: made here, nothing to check
    write_manifest(entry, build_manifest(entry))
    assert verify_entry(entry) == []
    (entry / "model.safetensors").write_bytes(b"short")
    assert verify_entry(entry) == ["model.safetensors: size 5 != 25600"]


def test_plan_tree_is_breadth_first_with_fanout_children():
    tree = plan_tree("s", list("abcdefg"), fanout=2)
    assert tree == {"a": "s", "b": "s", "c": "a", "d": "a", "e": "b", "f": "b", "g": "c"}
    assert ancestors(tree, "g") == ["c", "a", "s"]
    assert plan_tree("s", list("abc"), fanout=1) == {"a": "s", "b": "a", "c": "b"}
    big = plan_tree(0, list(range(1, 61)), fanout=3)
    assert max(len(ancestors(big, n)) for n in big) == 4  # 3 + 9 + 27 + 21
    assert all(list(big.values()).count(p) <= 3 for p in set(big.values()))
    with pytest.raises(ValueError):
        plan_tree("s", ["a", "s"])
    with pytest.raises(ValueError):
        plan_tree("s", ["a"], fanout=0)


def test_a_dead_nodes_subtree_moves_to_its_nearest_live_ancestor():
    tree = plan_tree("s", list("abcdefg"), fanout=2)
    fixed = reparent(tree, dead={"a"})
    assert "a" not in fixed and fixed["c"] == "s" and fixed["d"] == "s"
    assert fixed["g"] == "c"  # the subtree moves whole
    two = reparent(tree, dead={"a", "c"})
    assert two["g"] == "s" and two["d"] == "s"


def test_a_complete_node_with_spare_capacity_takes_an_orphan():
    tree = plan_tree("s", list("abcdefg"), fanout=2)
    # g's parent c dies; a (c's parent) still has d; f's subtree is empty, so complete f serves nobody yet
    assert live_parent(tree, "g", dead={"c"}) == "a"
    assert live_parent(tree, "g", dead={"c"}, complete={"f"}) == "f"
    # a node never adopts its own descendant
    assert live_parent(tree, "c", dead={"a"}, complete={"g"}) == "s"


def test_model_one_node_takes_one_copy_time():
    assert simulate_push(1, 100 * MB, GBIT, "tree") == pytest.approx(0.8)
    assert simulate_push(1, 100 * MB, GBIT, "star") == pytest.approx(0.8)


def test_model_tree_to_60_nodes_within_3x_one_node_and_star_far_slower():
    one = simulate_push(1, 100 * MB, GBIT, "tree")
    tree = simulate_push(60, 100 * MB, GBIT, "tree", fanout=2)
    star = simulate_push(60, 100 * MB, GBIT, "star", fanout=2)
    assert tree <= 3 * one
    assert star == pytest.approx(60 * one)  # one uplink carries every copy
    assert star > 10 * tree


def test_model_tree_time_grows_with_depth_not_node_count():
    times = [simulate_push(n, 100 * MB, GBIT, "tree") for n in (4, 16, 60, 250)]
    assert times == sorted(times)
    assert times[-1] - times[0] < 0.5 * times[0]
