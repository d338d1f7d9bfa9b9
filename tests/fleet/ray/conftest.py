"""Collected only inside the private network namespace that tests/fleet/test_in_netns.py makes."""

import pytest

from llm_ladder.testing.ray_cluster import assert_loopback_only, in_private_netns

collect_ignore_glob = [] if in_private_netns() else ["test_*.py"]


@pytest.fixture(autouse=True)
def _loopback_only():
    """Every Ray test ends by proving that nothing listened outside loopback."""
    yield
    assert_loopback_only()
