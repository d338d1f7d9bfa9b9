"""The driver's loop: give cells to free devices, pinned to their node, collect them, and never wait forever.

Each cell is a Ray task with a hard node affinity (a task for a dead node fails at once instead of waiting for
resources that will not come back), no retries (a rung measured twice would not be the rung measured once), and a
fresh worker (`max_calls=1`: no state from the last cell). Its outcome is one of:
- `ok` or `failed`: the rung's own record says which;
- `failed` with the error, when the cell raised (a model missing on that node);
- `unreachable` with the reason, when the node or its worker died, or the cell ran past `cell_timeout_s`.
Ctrl-C cancels every running cell (the climb stops its server), force-kills those still running after a grace
period, reaps what they left on every node, and re-raises.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from llm_ladder.fleet import require_ray
from llm_ladder.fleet.cells import Cell, CellRecord
from llm_ladder.fleet.connect import NodeInfo
from llm_ladder.fleet.remote import CellOutput, climb_cell, reap

CANCEL_GRACE_S = 30.0
REAP_TIMEOUT_S = 60.0


@cache
def _climb_task() -> Any:
    """A fresh worker per cell (`max_calls=1`: no state from the last one), never retried (a rung measured twice
    is not the rung measured once)."""
    return require_ray().remote(max_calls=1, max_retries=0)(climb_cell)


@cache
def _reap_remote() -> Any:
    return require_ray().remote(num_cpus=0, max_retries=0)(reap)


def _alive(node: NodeInfo) -> bool:
    ray = require_ray()
    return any(n["NodeID"] == node.node_id and n.get("Alive") for n in ray.nodes())


@dataclass
class Outcome:
    cell: Cell
    node: NodeInfo
    record: CellRecord
    output: CellOutput | None = None


@dataclass
class _Running:
    cell: Cell
    node: NodeInfo
    cell_id: str
    """The cell's own directory on the node: what the reaper may stop, leaving the node's other cells alone."""
    started: float
    cancelled_at: float | None = None


@dataclass
class Scheduler:
    plan_data: dict[str, Any]
    nodes: list[NodeInfo]
    run_id: str
    on_outcome: Callable[[Outcome], None]
    notify: Callable[[str], None] = print
    cell_timeout_s: float = 3600.0
    poll_s: float = 1.0
    free: dict[str, int] = field(default_factory=dict)
    """Free devices per node name."""

    def run(self, cells: list[Cell]) -> None:
        """Run every cell; returns when each has an outcome. Raises KeyboardInterrupt after cleaning up."""
        ray = require_ray()
        self.free = {n.name: n.devices for n in self.nodes}
        queue, running = list(cells), {}
        try:
            while queue or running:
                self._submit(queue, running)
                if not running:  # what is left wants nodes that are gone
                    for cell in queue:
                        self._unplaceable(cell)
                    return
                ready, _ = ray.wait(list(running), num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    self._collect(ref, running.pop(ref))
                self._enforce_deadlines(running)
            self._reap_all()  # what cells of a lost worker left in the nodes' temp directories
        except BaseException:  # Ctrl-C, or an error of ours while cells run: none is left running
            self._cancel_all(running)
            raise

    def _submit(self, queue: list[Cell], running: dict[Any, _Running]) -> None:
        for cell in list(queue):
            node = self._free_node(cell)
            if node is None:
                continue
            queue.remove(cell)
            self.free[node.name] -= 1
            cell_id = f"{cell.rung}-{secrets.token_hex(4)}"
            ref = self._task(node).remote(self.plan_data, cell.rung, self.run_id, cell_id)
            running[ref] = _Running(cell, node, cell_id, time.monotonic())
            self.notify(f"{cell.rung}: climbing on {node.name}")

    def _free_node(self, cell: Cell) -> NodeInfo | None:
        candidates = [n for n in self.nodes if cell.node in (None, n.name) and self.free.get(n.name, 0) > 0]
        return max(candidates, key=lambda n: self.free[n.name], default=None)

    def _task(self, node: NodeInfo) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        res: dict[str, Any] = {"num_cpus": 0}
        if node.kind == "gpu":
            res["num_gpus"] = 1  # Ray sets CUDA_VISIBLE_DEVICES to the cell's GPU
        elif node.kind == "device":
            res["resources"] = {"ladder_device": 1}
        strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        return _climb_task().options(scheduling_strategy=strategy, name=f"ladder-cell-{node.name}", **res)

    def _collect(self, ref: Any, run: _Running) -> None:
        ray = require_ray()
        from ray.exceptions import RayError

        seconds = round(time.monotonic() - run.started, 1)
        record = CellRecord(rung=run.cell.rung, node=run.node.name, node_id=run.node.node_id, status="failed",
                            seconds=seconds)  # fmt: skip
        output = None
        try:
            output = ray.get(ref)
            record.status = output.result["status"]
            record.reason = output.result.get("error")
            self.free[run.node.name] += 1
        except RayError as err:  # the cell's own error (RayTaskError), or its worker's or node's end
            record.status, record.reason = self._classify(err, run)
        self.on_outcome(Outcome(run.cell, run.node, record, output))

    def _classify(self, err: Exception, run: _Running) -> tuple[str, str]:
        from ray.exceptions import NodeDiedError, RayTaskError, TaskCancelledError

        if run.cancelled_at is not None:
            self._reap(run.node, run.cell_id)
            self.free[run.node.name] += 1
            return "unreachable", f"no result within {self.cell_timeout_s:.0f} s (--cell-timeout): cancelled"
        if isinstance(err, RayTaskError) and not isinstance(err, TaskCancelledError):
            self.free[run.node.name] += 1
            cause = err.cause if err.cause is not None else err
            return "failed", f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause) else ''}"
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if not isinstance(err, NodeDiedError) and _alive(run.node):
            # only the worker died (out of memory, killed): the node takes more cells
            self._reap(run.node, run.cell_id)
            self.free[run.node.name] += 1
            return "unreachable", f"the worker on {run.node.name} died: {type(err).__name__}: {first}"[:400]
        self.free[run.node.name] = 0  # nothing more is sent to a lost node
        return "unreachable", f"node {run.node.name} lost: {type(err).__name__}: {first}"[:400]

    def _unplaceable(self, cell: Cell) -> None:
        name = cell.node or "any node"
        record = CellRecord(rung=cell.rung, node=cell.node, status="unreachable",
                            reason=f"no live device on {name} to climb it")  # fmt: skip
        stand_in = NodeInfo(node_id="", name=name, address="", devices=0, kind="cpu", memory_gib=0)
        self.on_outcome(Outcome(cell, next((n for n in self.nodes if n.name == cell.node), stand_in), record))

    def _enforce_deadlines(self, running: dict[Any, _Running]) -> None:
        ray = require_ray()
        now = time.monotonic()
        for ref, run in running.items():
            if run.cancelled_at is None and now - run.started > self.cell_timeout_s:
                self.notify(f"{run.cell.rung} on {run.node.name}: past --cell-timeout, cancelling")
                run.cancelled_at = now
                ray.cancel(ref)  # KeyboardInterrupt in the cell: the climb stops its server
            elif run.cancelled_at is not None and now - run.cancelled_at > CANCEL_GRACE_S:
                ray.cancel(ref, force=True)

    def _cancel_all(self, running: dict[Any, _Running]) -> None:
        ray = require_ray()
        self.notify(f"stopping: cancelling {len(running)} running cell(s)")
        for ref in running:
            ray.cancel(ref)
        refs = list(running)
        with_grace = time.monotonic() + CANCEL_GRACE_S
        while refs and time.monotonic() < with_grace:
            _, refs = ray.wait(refs, num_returns=len(refs), timeout=1.0)
        for ref in refs:
            ray.cancel(ref, force=True)
        self._reap_all()

    def _reap_all(self) -> None:
        """The whole run on every node at once (a dead node is skipped): nothing of it is left running or on disk."""
        ray = require_ray()
        reaps = [self._reap_task(node).remote(self.run_id) for node in self.nodes if node.node_id]
        ray.wait(reaps, num_returns=len(reaps), timeout=REAP_TIMEOUT_S)

    def _reap(self, node: NodeInfo, cell_id: str) -> list[int]:
        """Stop what one cell left on `node` (best effort: a dead node cannot be reached, nor needs it)."""
        ray = require_ray()
        try:
            return ray.get(self._reap_task(node).remote(self.run_id, cell_id), timeout=REAP_TIMEOUT_S)
        except Exception:  # the node is gone or busy: its processes die with it, or with the parent guard
            return []

    @staticmethod
    def _reap_task(node: NodeInfo) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return _reap_remote().options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
