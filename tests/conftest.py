import pytest

from llm_ladder.testing.fake_engine import FakeVllm  # noqa: F401  (tests import it from here)


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


def word_tokenizer(words: list[str], **special: str):
    """A fast tokenizer over a fixed word list (the first word is the unknown token), split on whitespace: tiny
    test models get a real tokenizer without a download."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token=words[0], **special)
