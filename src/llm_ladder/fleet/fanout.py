"""Who copies the model from whom: a k-ary tree over the target nodes, its repair when a node fails, and a model of
how long a push takes (no Ray here: the planner is pure, and the simulator is what the benchmark plots).

Why a tree: 60 Jetsons pulling from one host share that host's uplink, so a star push takes ~60× one copy. In a
tree every node that holds a chunk forwards it to its k children while still receiving the next, so the uplinks of
all nodes work at once and the time grows with the tree's depth (log_k N), not with N.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Collection, Hashable, Sequence
from typing import Literal, TypeVar

N = TypeVar("N", bound=Hashable)
CHUNK_BYTES = 8 * 2**20
"""The unit a push moves (and serves onward as soon as it holds it): 8 MiB, small enough to pipeline a 100 MB model
through a deep tree, large enough that per-call overhead in Ray (~1 ms) stays under 1% of a chunk at 1 Gbit/s."""

Strategy = Literal["star", "tree"]


def plan_tree(source: N, targets: Sequence[N], fanout: int = 2) -> dict[N, N]:
    """Child → parent: breadth-first, the source and then every target taking up to `fanout` children, in the
    targets' order (a heap layout: the parent of targets[i] is [source, *targets][i // fanout])."""
    if fanout < 1:
        raise ValueError(f"fanout must be at least 1, not {fanout}")
    if source in targets or len(set(targets)) != len(targets):
        raise ValueError("targets must be distinct and must not include the source")
    order = [source, *targets]
    return {node: order[i // fanout] for i, node in enumerate(targets)}


def ancestors(tree: dict[N, N], node: N) -> list[N]:
    """The node's parent, its parent's parent, … up to the source (the one node that is nobody's child)."""
    chain: list[N] = []
    while node in tree:
        node = tree[node]
        if node in chain:
            raise ValueError(f"the tree has a cycle through {node!r}")
        chain.append(node)
    return chain


def descendants(tree: dict[N, N], node: N) -> set[N]:
    return {child for child in tree if node in ancestors(tree, child)}


def live_parent(tree: dict[N, N], node: N, dead: Collection[N], complete: Collection[N] = ()) -> N:
    """A new parent for `node` whose parent is dead: its nearest live ancestor (the source never dies), unless a
    node that already holds the whole model serves fewer children: a complete node sends at full uplink."""
    nearest = next(a for a in ancestors(tree, node) if a not in dead)
    load = Counter(parent for child, parent in tree.items() if child not in dead)
    below = descendants(tree, node)
    done = [c for c in complete if c not in dead and c != node and c not in below]
    best = min(done, key=lambda c: load[c], default=nearest)
    return best if load[best] < load[nearest] else nearest


def reparent(tree: dict[N, N], dead: Collection[N], complete: Collection[N] = ()) -> dict[N, N]:
    """The tree without the dead nodes: each child of a dead node moves, with its whole subtree, to `live_parent`."""
    work = dict(tree)
    for node in tree:
        if node not in dead and tree[node] in dead:
            work[node] = live_parent(work, node, dead, complete)
    return {child: parent for child, parent in work.items() if child not in dead}


def chunk_count(size_bytes: float, chunk_bytes: int = CHUNK_BYTES) -> int:
    return max(1, math.ceil(size_bytes / chunk_bytes))


def simulate_push(
    nodes: int,
    size_bytes: float,
    uplink_bytes_s: float,
    strategy: Strategy = "tree",
    fanout: int = 2,
    chunk_bytes: int = CHUNK_BYTES,
) -> float:
    """Seconds to push `size_bytes` to `nodes` nodes — a MODEL, not a measurement.

    Discrete events: the model is C equal chunks; every node's uplink sends one chunk at a time at
    `uplink_bytes_s`, round-robin among the receivers it serves (at most `fanout` at once); a receiver can forward a
    chunk the moment it holds it. `star`: the source serves every node. `tree`: `plan_tree`'s parents serve their
    children, pipelined. Left out: latency, downlink limits, disk and hashing time, Ray's overhead, contention on a
    shared switch. So it shows how the strategies scale with N, not what a real network will do."""
    if nodes < 1:
        return 0.0
    chunks = chunk_count(size_bytes, chunk_bytes)
    targets = list(range(1, nodes + 1))
    parents = {n: 0 for n in targets} if strategy == "star" else plan_tree(0, targets, fanout)
    return _Sim(parents, chunks, size_bytes / chunks / uplink_bytes_s, fanout).run()


class _Sim:
    """The event loop behind `simulate_push`: node 0 is the source; events are chunk arrivals."""

    def __init__(self, parents: dict[int, int], chunks: int, chunk_s: float, slots: int) -> None:
        self.children: dict[int, list[int]] = {}
        for child, parent in parents.items():
            self.children.setdefault(parent, []).append(child)
        self.chunks, self.chunk_s, self.slots = chunks, chunk_s, slots
        self.held = Counter({0: chunks})  # chunks a node holds
        self.sent: Counter[int] = Counter()  # chunks sent (or on the way) to a node
        self.busy: set[int] = set()
        self.turn: Counter[int] = Counter()  # round-robin position per sender
        self.events: list[tuple[float, int, int]] = []

    def run(self) -> float:
        now = 0.0
        self.send(0, now)
        while self.events:
            now, sender, child = heapq.heappop(self.events)
            self.held[child] += 1
            self.busy.discard(sender)
            self.send(sender, now)
            self.send(child, now)
        return now

    def send(self, sender: int, now: float) -> None:
        """Start the sender's next chunk, if it is idle and one of its active receivers lacks one it holds."""
        if sender in self.busy:
            return
        kids = self.children.get(sender, [])
        active = [c for c in kids if self.sent[c] < self.chunks][: self.slots]
        ready = [c for c in active if self.sent[c] < self.held[sender]]
        if not ready:
            return
        start = self.turn[sender]
        child = min(ready, key=lambda c: (kids.index(c) - start) % len(kids))
        self.turn[sender] = kids.index(child) + 1
        self.sent[child] += 1
        self.busy.add(sender)
        heapq.heappush(self.events, (now + self.chunk_s, sender, child))
