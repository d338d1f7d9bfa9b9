"""`ladder probe` on the embedded default model (SmolLM2-135M-Instruct), offline, on this CPU."""

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.models.store import DEFAULT_MODEL, ModelStore
from llm_ladder.probe.probe import ProbeError, probe

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_default_model_top5_equals_a_direct_forward_pass(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = probe(DEFAULT_MODEL, max_new_tokens=16, ignore_eos=True, topk_steps=2, device="cpu", dtype="float32")
    path = ModelStore().pull(DEFAULT_MODEL)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        probs = torch.softmax(model(**enc).logits[0, -1], dim=-1).topk(5)
    assert result.prompt == text and [i for i, _ in result.prompt_tokens] == enc.input_ids[0].tolist()
    assert [c.id for c in result.first_token_top] == probs.indices.tolist()
    assert [c.probability for c in result.first_token_top] == pytest.approx(probs.values.tolist(), abs=1e-4)
    assert [c.id for c in result.step_tops[0]] == probs.indices.tolist() and len(result.step_tops) == 2
    assert result.generated_tokens == 16 and result.decode_tps > 0 and result.path == "dynamic"
    assert result.pinned_by == "content hash" and result.roofline.percent > 0 and "Paris" in result.text


def test_default_model_without_a_thinking_switch_says_so():
    with pytest.raises(ProbeError, match="no enable_thinking switch"):
        probe(DEFAULT_MODEL, thinking=False, max_new_tokens=2, device="cpu")
    result = CliRunner().invoke(app, ["probe", DEFAULT_MODEL, "--thinking", "on"])
    assert result.exit_code == 2 and "no enable_thinking switch: drop --thinking" in result.output
