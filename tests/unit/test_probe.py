"""`ladder probe` on a tiny random model made here (the default model is an e2e matter): offline, top-5 from a
direct forward pass, the thinking switch, one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from llm_ladder.cli import app
from llm_ladder.probe import ProbeError, probe, render

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

THINKING_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% if enable_thinking is defined and not enable_thinking %}"
    "<think></think>{% endif %}{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer Llama with random weights and a word-level tokenizer, saved as a local directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = tmp_path_factory.mktemp("tiny")
    words = [
        "<unk>",
        "<eos>",
        "<|user|>",
        "<|assistant|>",
        "<think></think>",
        "what",
        "is",
        "the",
        "capital",
        "of",
        "france",
        "?",
    ]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", unk_token="<unk>")
    tok.chat_template = THINKING_TEMPLATE
    tok.save_pretrained(path)
    config = transformers.LlamaConfig(
        vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_top5_equals_a_direct_forward_pass_and_speeds_are_measured(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = probe(
        str(tiny), "what is the capital of france ?", chat=False, max_new_tokens=8, ignore_eos=True, dtype="float32"
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    enc = tok("what is the capital of france ?", return_tensors="pt")
    probs = torch.softmax(model(**enc).logits[0, -1], dim=-1)
    assert [c.id for c in result.first_token_top] == probs.topk(5).indices.tolist()
    assert [c.probability for c in result.first_token_top] == pytest.approx(probs.topk(5).values.tolist(), abs=1e-5)
    assert result.generated_tokens == 8 and result.decode_tps > 0 and result.prefill_s > 0
    assert [t for _, t in result.prompt_tokens] == ["what", "is", "the", "capital", "of", "france", "?"]
    assert len(result.revision) == 64 and result.placement == {"": "cpu"} and result.peak_memory_gib > 0
    assert "first token top-5" in str(result)


def test_the_thinking_switch_changes_the_rendered_prompt(tiny):
    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    on, off = render(tok, "hi", chat=True, thinking=True), render(tok, "hi", chat=True, thinking=False)
    assert off.endswith("<|assistant|><think></think>") and on.endswith("<|assistant|>") and on != off
    tok.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    with pytest.raises(ProbeError, match="no enable_thinking switch"):
        render(tok, "hi", chat=True, thinking=True)
    with pytest.raises(ProbeError, match="--thinking needs --chat"):
        render(tok, "hi", chat=False, thinking=False)


def test_ladder_probe_json_and_bad_input(tiny, tmp_path):
    runner = CliRunner()
    args = ["probe", str(tiny), "--prompt", "what is the capital ?", "--max-new-tokens", "4", "--ignore-eos"]
    result = runner.invoke(app, [*args, "--json", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["generated_tokens"] == 4, result.stdout
    result = runner.invoke(app, ["probe", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "neither in the model store nor a local directory" in result.output
    result = runner.invoke(app, ["probe", str(tiny), "--thinking", "maybe"])
    assert result.exit_code == 2 and "on or off" in result.output
