import sys

import pytest

from llm_ladder.engines.vllm import VllmEngine


class FakeVllm(VllmEngine):
    """The vLLM adapter pointed at the scripted mock server instead of vLLM: everything but the model."""

    name = "fake-vllm"

    def __init__(self, **kwargs) -> None:
        super().__init__(python=sys.executable, module="llm_ladder.mock_server", **kwargs)


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0" * 1024)
    return d


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: proves a code path is offline."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network touched: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
