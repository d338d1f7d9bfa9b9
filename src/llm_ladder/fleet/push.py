"""`ladder fleet push`: one model store entry copied to every node over Ray, checked by its sha256 manifest.

One `Depot` actor per node (no CPU reserved, pinned to the node) holds that node's store. The driver's node serves
the entry; every target pulls 8 MiB chunks in order from its parent in `fanout.plan_tree` and serves the chunks it
already holds to its own children while still receiving (a pipelined tree: 60 nodes cost about the depth of the
tree, not 60 copies). A copy lands in `<store>/.<name>.partial`, hashed while written, re-verified in full, and is
renamed into place only when every file matches: a node never has half an entry under the real name. A node that
dies or stalls is marked failed with the reason, and its children pull from the nearest live ancestor instead.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from llm_ladder.fleet import FleetError, require_ray
from llm_ladder.fleet.connect import NodeInfo
from llm_ladder.fleet.depot import ABSENT, STALL_S, describe, spawn_depot
from llm_ladder.fleet.fanout import live_parent, plan_tree, reparent
from llm_ladder.fleet.manifest import MANIFEST_FILE, Manifest, current_manifest, read_manifest, verify
from llm_ladder.models.store import ModelStore

SOURCE = ""
"""The source's key among the nodes (the driver's node may be a target too, under its node id)."""
PROBE_S = 60.0
MAX_ATTEMPTS = 3


class NodePush(BaseModel):
    node: str
    node_id: str
    status: Literal["copied", "present", "failed"]
    seconds: float = 0.0
    bytes: int = 0
    source: str | None = None
    """The node it copied from."""
    reason: str | None = None
    """Why it failed, or what was wrong with the copy it had before."""


class PushReport(BaseModel):
    model: str
    manifest_sha: str
    bytes: int
    seconds: float
    nodes: list[NodePush]

    @property
    def failed(self) -> list[NodePush]:
        return [n for n in self.nodes if n.status == "failed"]


def verify_entry(path: str | Path) -> list[str]:
    """Cheap check before a climb: the entry's files against its `.ladder-manifest.json` by presence and size;
    [] when it matches or has no manifest (an entry made on this node, not pushed)."""
    entry = Path(path)
    manifest = read_manifest(entry)
    if manifest is None:
        return [f"{MANIFEST_FILE}: unreadable or inconsistent"] if (entry / MANIFEST_FILE).exists() else []
    return verify(entry, manifest, full=False)


def push_model(name: str, store: ModelStore, nodes: list[NodeInfo], **options: Any) -> PushReport:
    """Copy store entry `name` from this (the driver's) node to every node's own store; `options` as push_entry's
    (parallel children per node, timeout_s, notify, full_check, stall_s). A node whose entry matches the manifest
    (sizes; every byte with full_check) is left as it is."""
    if not store.has(name):
        raise FleetError(f"model {name!r} is not in the store ({store.root}): ladder models pull {name}")
    return push_entry(name, store.root, nodes, None, **options)


def push_entry(
    name: str,
    source_root: Path,
    nodes: list[NodeInfo],
    target: str | None = None,
    parallel: int = 2,
    timeout_s: float = 900,
    notify: Callable[[str], None] = print,
    full_check: bool = False,
    stall_s: float = STALL_S,
) -> PushReport:
    """Copy `source_root/name` to `name` under every node's `target` root (None: its model store; a token such as
    compile_cache.TARGET is resolved on the node)."""
    manifest = current_manifest(source_root / name)
    push = _Push(name, manifest, parallel, timeout_s, notify, stall_s)
    try:
        return push.run(source_root, nodes, full_check, target)
    finally:
        push.close()


class _Push:
    """The driver's side of one push: probe every node, then run the tree, repairing it as nodes fail."""

    def __init__(self, name: str, manifest: Manifest, parallel: int, timeout_s: float, notify, stall_s: float):
        self.ray = require_ray()
        self.name, self.manifest, self.parallel, self.notify = name, manifest, parallel, notify
        self.timeout_s, self.stall_s = timeout_s, stall_s
        self.start = time.monotonic()
        self.deadline = self.start + timeout_s
        self.depots: dict[str, Any] = {}
        self.names: dict[str, str] = {}
        self.rows: dict[str, NodePush] = {}
        self.had: dict[str, list[str]] = {}
        self.tree: dict[str, str] = {}
        self.dead: set[str] = set()
        self.complete: set[str] = {SOURCE}
        self.running: dict[Any, tuple[str, str]] = {}
        self.began: dict[str, float] = {}
        self.attempts: Counter[str] = Counter()

    def run(self, root: Path, nodes: list[NodeInfo], full_check: bool, target: str | None = None) -> PushReport:
        self._spawn(root, nodes, target)
        need = self._probe(full_check)
        if need:
            self._copy(need)
        rows = [self.rows[n.node_id] for n in nodes]
        seconds = round(time.monotonic() - self.start, 2)
        return PushReport(model=self.name, manifest_sha=self.manifest.sha256, bytes=self.manifest.total_bytes,
                          seconds=seconds, nodes=rows)  # fmt: skip

    def close(self) -> None:
        """Kill every Depot: nothing of the push stays on any node (a stopped copy leaves only its .partial)."""
        for depot in self.depots.values():
            self.ray.kill(depot, no_restart=True)

    def _spawn(self, root: Path, nodes: list[NodeInfo], target: str | None) -> None:
        here = self.ray.get_runtime_context().get_node_id()
        alive = {n["NodeID"]: n.get("NodeName") or n.get("NodeManagerAddress") for n in self.ray.nodes() if n["Alive"]}
        self.names[SOURCE] = alive.get(here, "driver")
        self.depots[SOURCE] = spawn_depot(here, str(root))
        for node in nodes:
            self.names[node.node_id] = node.name
            if node.node_id in alive:
                self.depots[node.node_id] = spawn_depot(node.node_id, target)
            else:
                self._fail(node.node_id, "the node is not alive in the cluster")

    def _probe(self, full_check: bool) -> list[str]:
        """Ask every node what it has; returns the nodes that need a copy, in the caller's order."""
        sha = self.manifest.sha256
        asked = {d.inspect.remote(self.name, sha, full_check): key for key, d in self.depots.items()}
        wait_s = max(0.0, min(PROBE_S, self.deadline - time.monotonic()))
        done, _ = self.ray.wait(list(asked), num_returns=len(asked), timeout=wait_s)
        answers = {asked[ref]: self._answer(ref) for ref in done}
        source = answers.get(SOURCE, ["no answer"])
        if source:
            raise FleetError(f"the source entry does not match its manifest: {'; '.join(source[:3])}")
        need = []
        for key in self.depots.keys() - {SOURCE}:
            problems = answers.get(key, [f"failed: no answer in {wait_s:.0f} s"])
            if problems and problems[0].startswith("failed: "):
                self._fail(key, problems[0].removeprefix("failed: "))
            elif problems:
                self.had[key] = [] if problems == [ABSENT] else problems
                need.append(key)
            else:
                self._row(key, "present", seconds=time.monotonic() - self.start)
        return sorted(need, key=list(self.names).index)

    def _answer(self, ref: Any) -> list[str]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            return [f"failed: {describe(err)}"]

    def _copy(self, need: list[str]) -> None:
        self.tree = plan_tree(SOURCE, need, self.parallel)
        for key in need:
            self._start(key)
        while self.running and (left := self.deadline - time.monotonic()) > 0:
            done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=min(left, 5.0))
            for ref in done:
                self._finish(ref)
        for key, _parent in list(self.running.values()):
            self._fail(key, f"timed out: not done after {self.timeout_s:.0f} s")
        self.running.clear()

    def _start(self, key: str) -> None:
        parent = self.tree[key]
        self.attempts[key] += 1
        self.began.setdefault(key, time.monotonic())
        depot = self.depots[key]
        args = (self.name, self.manifest.model_dump(), self.depots[parent], self.stall_s, self.attempts[key])
        ref = depot.fetch.remote(*args)
        self.running[ref] = (key, parent)

    def _finish(self, ref: Any) -> None:
        key, parent = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            return self._fail(key, describe(err))
        if result["ok"]:
            self.complete.add(key)
            seconds = time.monotonic() - self.began[key]
            self._row(key, "copied", seconds=seconds, bytes=result["bytes"], source=self.names[parent])
        elif result["parent_lost"] and self.attempts[key] < MAX_ATTEMPTS:
            lost = self.dead | {parent}
            self.tree[key] = SOURCE if parent == SOURCE else live_parent(self.tree, key, lost, self.complete)
            self.notify(f"{self.names[key]}: lost {self.names[parent]} ({result['reason']}); "
                        f"pulling from {self.names[self.tree[key]]}")  # fmt: skip
            self._start(key)
        else:
            self._fail(key, result["reason"])

    def _fail(self, key: str, reason: str) -> None:
        """Mark the node failed, move its subtree up, and tell its children to stop waiting for it."""
        self.dead.add(key)
        if key in self.tree:
            self.tree = reparent(self.tree, self.dead, self.complete)
        for child, parent in self.running.values():
            if parent == key:
                self.depots[child].abandon.remote(self.name, self.attempts[child])
        self._row(key, "failed", reason=reason)

    def _row(self, key: str, status: str, **fields: Any) -> None:
        had = self.had.get(key)
        if had and status == "copied":
            fields["reason"] = "replaced a bad copy: " + "; ".join(had[:5])
        fields["seconds"] = round(fields.get("seconds", 0.0), 2)
        row = NodePush(node=self.names[key], node_id=key, status=status, **fields)  # type: ignore[arg-type]
        self.rows[key] = row
        self.notify(_line(row))


def _line(row: NodePush) -> str:
    if row.status == "copied":
        extra = f" ({row.reason})" if row.reason else ""
        return f"{row.node}: copied {row.bytes / 1e6:.1f} MB from {row.source} in {row.seconds:.1f} s{extra}"
    return f"{row.node}: {row.status}" + (f": {row.reason}" if row.reason else "")
