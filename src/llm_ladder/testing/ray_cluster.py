"""A Ray cluster of several nodes on this one machine, for tests and benchmarks, that talks over loopback only.

Ray turns 127.0.0.1 into the host's interface address (ray-project/ray#59110): it asks the kernel which source
address reaches 8.8.8.8. Inside a network namespace of our own where only `lo` is up and the default route is
`lo` with source 127.0.0.1, that answer is 127.0.0.1, so every Ray socket is on loopback and no packet can leave
the machine. `in_netns` re-runs a command there; `assert_loopback_only` proves it for every listening socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psutil

NETNS_ENV = "LADDER_NETNS"
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}
"""A killed node is declared dead in ~1.5 s instead of Ray's default ~15 s."""

_SETUP = 'ip link set lo up && ip route add default dev lo src 127.0.0.1 && exec "$@"'


def in_private_netns() -> bool:
    return os.environ.get(NETNS_ENV) == "1"


def netns_unavailable() -> str | None:
    """Why this machine cannot make a private network namespace (not root, no unshare or ip), else None."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "unshare or ip is not installed"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", _SETUP, "sh", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n failed: {probe.stderr.strip() or probe.returncode}"


def in_netns(argv: Sequence[str]) -> list[str]:
    """`argv` run in a new network namespace with only loopback (needs root); the child sees LADDER_NETNS=1."""
    return ["unshare", "-n", "env", f"{NETNS_ENV}=1", "sh", "-c", _SETUP, "sh", *argv]


def listening_addresses() -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN}


def assert_loopback_only() -> None:
    if outside := listening_addresses() - LOOPBACK:
        raise AssertionError(f"sockets listen outside loopback: {sorted(outside)}")


@contextmanager
def local_cluster(
    nodes: int,
    devices: int = 1,
    node_env: Callable[[int], dict[str, str]] | None = None,
    object_store_mb: int = 150,
) -> Iterator[Any]:
    """A head without devices (the driver's; Ray will not remove it) and `nodes` worker nodes `node1`… each with
    `devices` of `ladder_device`; `node_env(i)` gives node i's environment. Yields the `ray.cluster_utils.Cluster`."""
    if not in_private_netns():
        raise RuntimeError("a local Ray cluster runs only inside a private network namespace (testing.ray_cluster)")
    from ray.cluster_utils import Cluster

    short = tempfile.mkdtemp(prefix="lr", dir="/tmp")  # Ray's unix sockets need a short path
    os.environ.update(RAY_TMPDIR=short, RAY_USAGE_STATS_ENABLED="0")
    head = {"num_cpus": 0, "include_dashboard": False, "node_ip_address": "127.0.0.1",
            "_system_config": FAST_FAILURE_DETECTION}  # fmt: skip
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for i in range(1, nodes + 1):
            add_node(cluster, i, devices, node_env(i) if node_env else {}, object_store_mb)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        import ray

        ray.shutdown()  # Ray refuses to remove the head a driver is attached to
        cluster.shutdown()
        for _ in range(5):  # Ray's log monitor may still write into its session directory for a moment
            shutil.rmtree(short, ignore_errors=True)
            if not os.path.exists(short):
                break
            time.sleep(0.5)


def add_node(cluster: Any, i: int, devices: int = 1, env: dict[str, str] | None = None, store_mb: int = 150) -> Any:
    return cluster.add_node(
        node_name=f"node{i}",
        node_ip_address="127.0.0.1",
        num_cpus=devices,
        resources={"ladder_device": devices},
        env_vars=env or {},
        object_store_memory=store_mb * 2**20,
    )
