"""The cluster as the fleet sees it: connect to a Ray address, list the live nodes and their devices, select some.

A node's devices are its slots: `ladder_device` (a custom resource: a Jetson board, a simulated device in tests)
if it declares one, else its GPUs, else the whole node as one CPU device, since a CPU climb uses every core.
"""

from __future__ import annotations

import fnmatch
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal

from llm_ladder.fleet import FleetError, require_ray

DEVICE_RESOURCE = "ladder_device"
NAMESPACE = "llm-ladder"

DeviceKind = Literal["device", "gpu", "cpu"]


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    name: str
    """The node's name (`ray start --node-name`), else its address: how reports and `--nodes` name it."""
    address: str
    devices: int
    kind: DeviceKind
    memory_gib: float

    def short(self) -> str:
        return f"{self.name} ({self.node_id[:8]})"


def connect(address: str) -> None:
    """Attach this process to the cluster at `address` (`auto`, or host:port of the head) as a driver."""
    ray = require_ray()
    if ray.is_initialized():
        return
    if address != "auto":
        _reachable(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FleetError(f"no Ray cluster at {address}: {first}") from None


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Ray waits minutes for a head that is not there; a refused or silent port is said at once."""
    if address.startswith("ray://"):
        raise FleetError(f"{address}: Ray Client addresses are not supported; run ladder on a node of the cluster")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FleetError(f"--address {address}: expected host:port of the Ray head (e.g. 10.0.0.1:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise FleetError(f"no Ray cluster at {address}: {err.strerror or err}") from None


def node_of(raw: dict[str, Any]) -> NodeInfo | None:
    """A live node from `ray.nodes()`, or None for one without a device (a head started with --num-cpus 0)."""
    if not raw.get("Alive"):
        return None
    res = raw.get("Resources", {})
    kind: DeviceKind
    if res.get(DEVICE_RESOURCE):
        kind, devices = "device", int(res[DEVICE_RESOURCE])
    elif res.get("GPU"):
        kind, devices = "gpu", int(res["GPU"])
    elif res.get("CPU"):
        kind, devices = "cpu", 1
    else:
        return None
    name = raw.get("NodeName") or raw.get("NodeManagerAddress", "")
    memory = res.get("memory", 0) / 2**30
    return NodeInfo(raw["NodeID"], name, raw.get("NodeManagerAddress", ""), devices, kind, round(memory, 1))


def alive_nodes() -> list[NodeInfo]:
    """The cluster's live nodes that have a device, by name."""
    ray = require_ray()
    nodes = [n for raw in ray.nodes() if (n := node_of(raw)) is not None]
    names = [n.name for n in nodes]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise FleetError(f"several nodes are called {', '.join(twice)}: give each its own `ray start --node-name`")
    return sorted(nodes, key=lambda n: (n.name, n.node_id))


def select(nodes: list[NodeInfo], selector: str | None) -> list[NodeInfo]:
    """`--nodes`: comma-separated names, name patterns (jetson-*) or node-id prefixes; None: every node."""
    if not selector:
        chosen = nodes
    else:
        patterns = [p.strip() for p in selector.split(",") if p.strip()]
        unknown = [p for p in patterns if not any(_matches(n, p) for n in nodes)]
        if unknown:
            names = ", ".join(n.name for n in nodes) or "none"
            raise FleetError(f"--nodes {', '.join(unknown)}: no live node matches (nodes: {names})")
        chosen = [n for n in nodes if any(_matches(n, p) for p in patterns)]
    if not chosen:
        raise FleetError("the cluster has no live node with a device (CPU, GPU or ladder_device)")
    return chosen


def _matches(node: NodeInfo, pattern: str) -> bool:
    return fnmatch.fnmatchcase(node.name, pattern) or (len(pattern) >= 6 and node.node_id.startswith(pattern))


def probe_nodes(nodes: list[NodeInfo], timeout_s: float) -> dict[str, dict[str, Any] | str]:
    """Each node's probe, or why there is none (no answer in time, the node died)."""
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from llm_ladder.fleet.remote import probe

    task = ray.remote(num_cpus=0, max_retries=0)(probe)
    refs = {n.name: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote()
            for n in nodes}  # fmt: skip
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    answers: dict[str, dict[str, Any] | str] = {}
    for name, ref in refs.items():
        if ref not in ready:
            answers[name] = f"no answer within {timeout_s:.0f} s"
            ray.cancel(ref, force=True)
            continue
        try:
            answers[name] = ray.get(ref)
        except Exception as err:  # the node died, or the probe failed there
            answers[name] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return answers
