"""The Ray tests (tests/fleet/ray) run in a private network namespace with only loopback: Ray would otherwise bind
the host's interface address (testing/ray_cluster.py). This test is their door; it fails with their output."""

import subprocess
import sys
from pathlib import Path

import pytest

from llm_ladder.testing.ray_cluster import in_netns, in_private_netns, netns_unavailable

pytest.importorskip("ray", reason="the fleet extra is not installed")
RAY_TESTS = Path(__file__).parent / "ray"


@pytest.mark.skipif(in_private_netns(), reason="already inside the namespace: the tests run directly")
@pytest.mark.timeout(1800)
def test_the_ray_tests_pass_in_a_private_loopback_network_namespace():
    if why := netns_unavailable():
        pytest.skip(f"no private network namespace: {why}")
    cmd = [sys.executable, "-m", "pytest", str(RAY_TESTS), "-q", "-p", "no:cacheprovider", "-rs"]
    run = subprocess.run(in_netns(cmd), capture_output=True, text=True, cwd=RAY_TESTS.parents[2])
    tail = "\n".join(run.stdout.splitlines()[-60:])
    print(tail)
    assert run.returncode == 0, f"Ray tests failed (rc {run.returncode}):\n{tail}\n{run.stderr[-3000:]}"
    assert " passed" in tail and "skipped" not in tail.split("\n")[-1], tail
