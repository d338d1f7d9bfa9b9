"""`ladder probe` on a tiny random model made here (the default model is an e2e matter): offline, top-5 from a
direct forward pass, the thinking switch, one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.probe.probe import ProbeError, probe, render

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
    from tests.conftest import word_tokenizer

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
    tok = word_tokenizer(words, eos_token="<eos>")
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


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def hub(tiny, tmp_path, monkeypatch):
    """The tiny model as the Hugging Face cache holds a download of `org/tiny` (main → COMMIT)."""
    import shutil

    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(tiny, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return repo


def test_hf_cache_models_resolve_offline_to_the_commit_and_bad_revisions_fail(hub, no_network, monkeypatch):
    from llm_ladder.measure.roofline import Bandwidth

    monkeypatch.setattr("llm_ladder.probe.probe.device_bandwidth", lambda device: Bandwidth(gbs=10.0, source="test"))
    options = {"chat": False, "max_new_tokens": 4, "ignore_eos": True, "dtype": "float32", "device": "cpu"}
    result = probe("org/tiny", "what is the capital ?", revision="main", **options)
    assert result.revision == COMMIT and result.pinned_by == "commit" and result.generated_tokens == 4
    assert probe("org/tiny", "what is the capital ?", revision=COMMIT, **options).revision == COMMIT
    with pytest.raises(ProbeError, match=r"unknown revision 'v9' of org/tiny .*cached: main → 0123456789ab"):
        probe("org/tiny", "what ?", revision="v9", **options)
    with pytest.raises(ProbeError, match="'org/other' is not in the Hugging Face cache"):
        probe("org/other", "what ?", **options)


def test_a_plain_directory_is_pinned_by_its_content_hash(tiny):
    from llm_ladder.probe.source import content_hash, resolve

    digest = content_hash(tiny)
    assert resolve(str(tiny), digest[:8]).revision == digest
    with pytest.raises(ProbeError, match=f"does not match .* its content hash is {digest[:12]}"):
        resolve(str(tiny), "beef")


def test_steps_topk_roofline_and_the_static_path(tiny, monkeypatch):
    from llm_ladder.measure.roofline import Bandwidth
    from llm_ladder.probe.probe import bytes_per_step

    monkeypatch.setattr("llm_ladder.probe.probe.device_bandwidth", lambda device: Bandwidth(gbs=10.0, source="test"))
    options = {"chat": False, "max_new_tokens": 6, "ignore_eos": True, "dtype": "float32", "device": "cpu"}
    dynamic = probe(str(tiny), "what is the capital of france ?", topk_steps=3, **options)
    static = probe(str(tiny), "what is the capital of france ?", decode_path="static", **options)
    assert dynamic.path == "dynamic" and static.path == "static"
    assert [a.path for a in static.attempts] == ["static"] and static.attempts[0].error is None
    assert len(dynamic.step_tops) == 3 and static.step_tops == []
    assert [c.id for c in dynamic.step_tops[0]] == [c.id for c in dynamic.first_token_top]
    assert dynamic.text == static.text
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    emb = model.get_input_embeddings().weight
    assert bytes_per_step(model) == sum(p.numel() * 4 for p in model.parameters()) - emb.numel() * 4 + 32 * 4
    roof = dynamic.roofline
    expected = (bytes_per_step(model) + roof.kv_mib_per_step * 2**20) * dynamic.decode_tps / 1e9 / 10.0 * 100
    assert roof.percent == pytest.approx(expected) and "of 10 GB/s (test)" in str(dynamic)


@pytest.mark.parametrize("ignore_eos", [False, True])
def test_the_fast_paths_loop_decodes_what_generate_does(tiny, ignore_eos):
    """The compiled path's loop (run uncompiled here: CUDA graphs need a GPU) gives generate's greedy tokens."""
    from llm_ladder.probe.decode_paths import Request, decode_step, generate, greedy_loop

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    enc = tok("what is the capital of france ?", return_tensors="pt")
    request = Request(enc.input_ids, enc.attention_mask, 12, ignore_eos, 1, topk_steps=2, eos_ids=(1,))
    loop = greedy_loop(model, request, decode_step(model))
    reference = generate(model, request, "dynamic")
    assert loop.tokens == reference.tokens and (len(loop.tokens) == 12 or not ignore_eos)
    assert len(loop.step_s) >= len(loop.tokens) and loop.tops[0][0][0] == reference.tops[0][0][0]


def test_paths_to_try_and_random_shapes():
    from llm_ladder.probe.decode_paths import PATHS, candidates
    from llm_ladder.probe.source import byte_tokenizer, resolve, shapes

    assert candidates("cpu", "auto") == ("dynamic",) and candidates("cuda", "auto") == PATHS
    assert candidates("cpu", "static") == ("static",)
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        candidates("cpu", "compiled")
    assert "llama-3.1-8b" in shapes()
    source = resolve("llama-3.1-8b", random=True)
    assert source.path is None and source.pinned_by == "shape" and source.random_weights
    with pytest.raises(ProbeError, match=r"with --random-weights also one of: llama-3\.1-8b"):
        resolve("no-such-model", random=True)
    tok = byte_tokenizer()
    text = render(tok, "héllo", chat=True, thinking=None)
    assert text == "<|user|>héllo<|end|><|assistant|>" and tok.decode(tok(text).input_ids) == text


def test_bad_paths_and_devices_are_one_line_errors(tiny):
    runner = CliRunner()
    result = runner.invoke(app, ["probe", str(tiny), "--decode-path", "fast"])
    assert result.exit_code == 2 and "decode path 'fast': auto, compiled, static, dynamic" in result.output
    result = runner.invoke(app, ["probe", str(tiny), "--device", "tpu"])
    assert result.exit_code == 2 and "--device 'tpu': auto, cpu or cuda" in result.output
    result = runner.invoke(app, ["probe", str(tiny), "--revision", "beef"])
    assert result.exit_code == 2 and "does not match" in result.output


def test_a_failing_path_falls_back_to_the_next_and_is_reported(tiny, monkeypatch):
    from llm_ladder.probe import decode_paths

    real = decode_paths._run

    def broken_static(model, request, path, energy=None):
        if path == "static":
            raise RuntimeError("CUDA graph capture failed\nsecond line")
        return real(model, request, path, energy)

    monkeypatch.setattr(decode_paths, "_run", broken_static)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 6, 7]])
    request = decode_paths.Request(ids, torch.ones_like(ids), 4, True, 1)
    result = decode_paths.decode(model, request, ("static", "dynamic"))
    assert result.path == "dynamic" and len(result.tokens) == 4
    assert [(a.path, a.error) for a in result.attempts] == [
        ("static", "RuntimeError: CUDA graph capture failed"),
        ("dynamic", None),
    ]
    with pytest.raises(RuntimeError, match="no decode path worked here: static: RuntimeError"):
        decode_paths.decode(model, request, ("static",))


def test_layers_off_the_gpu_get_a_loud_warning():
    from types import SimpleNamespace

    from llm_ladder.probe.probe import _placement

    device_map = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": "cpu", "lm_head": "disk"}
    offloaded = SimpleNamespace(hf_device_map=device_map)
    placement, warnings = _placement(offloaded, "cuda")
    assert placement["model.layers.1"] == "cpu"
    assert warnings == ["2 module(s) on CPU or disk while a GPU is used (lm_head, model.layers.1): expect ~1 tok/s"]
    assert _placement(offloaded, "cpu")[1] == []


def test_cpu_peak_memory_is_the_high_water_mark_not_the_current_rss():
    import psutil

    from llm_ladder.probe.probe import _peak_memory, _reset_peak

    _reset_peak("cpu")
    before = psutil.Process().memory_info().rss
    block = bytearray(300 * 2**20)  # touched: resident
    del block
    peak_gib, now_gib = _peak_memory("cpu"), psutil.Process().memory_info().rss / 2**30
    assert peak_gib * 2**30 >= before + 280 * 2**20 > psutil.Process().memory_info().rss
    assert peak_gib > now_gib + 0.25
