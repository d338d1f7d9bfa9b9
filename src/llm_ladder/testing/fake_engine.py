"""`engine: fake-vllm`: the vLLM adapter pointed at the scripted mock server (mock_server.py) instead of vLLM.

Everything but the model is real (process start and stop, health, logs, metrics, requests): the unit tests climb
with it, and a user can try the tool's flow without a model or an engine installed.
"""

from __future__ import annotations

import sys

from llm_ladder.engines.vllm import VllmEngine


class FakeVllm(VllmEngine):
    name = "fake-vllm"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(python=sys.executable, module="llm_ladder.testing.mock_server", **kwargs)
