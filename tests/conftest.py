import pytest

from llm_ladder.mock_engine import FakeVllm  # noqa: F401  (tests import it from here)


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
