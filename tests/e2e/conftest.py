import importlib.util

import pytest


def pytest_collection_modifyitems(items):
    """End-to-end tests need vLLM's CPU build (scripts/install.sh cpu) unless their module says `NEEDS_VLLM =
    False`; say so plainly when it is missing."""
    have_vllm = importlib.util.find_spec("vllm") is not None
    for item in items:
        item.add_marker(pytest.mark.e2e)
        if not have_vllm and getattr(item.module, "NEEDS_VLLM", True):
            item.add_marker(pytest.mark.skip(reason="vllm is not installed: run scripts/install.sh cpu,test"))
