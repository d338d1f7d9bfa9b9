import importlib.util

import pytest


def pytest_collection_modifyitems(items):
    """End-to-end tests need vLLM's CPU build (scripts/install.sh cpu); say so plainly when it is missing."""
    if importlib.util.find_spec("vllm") is None:
        for item in items:
            item.add_marker(pytest.mark.skip(reason="vllm is not installed: run scripts/install.sh cpu,test"))
    for item in items:
        item.add_marker(pytest.mark.e2e)
