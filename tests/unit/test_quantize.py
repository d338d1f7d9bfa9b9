import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-layer Llama with a hidden size (160) that 128-blocks do not divide, and a word-level tokenizer."""
    from tests.conftest import word_tokenizer

    out = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=160, intermediate_size=320, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=64)  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # one activation outlier channel into layer 1's down_proj: the classic W8A8 failure
        model.model.layers[1].mlp.up_proj.weight[7] *= 300
    model.save_pretrained(out)
    words = [
        "[UNK]",
        *[
            "the",
            "of",
            "and",
            "to",
            "a",
            "in",
            "is",
            "it",
            "you",
            "that",
            "he",
            "was",
            "for",
            "on",
            "are",
            "with",
            "as",
        ],
    ]
    word_tokenizer(words).save_pretrained(out)
    return out


def test_block_ranges_cover_partial_edge_blocks():
    from compressed_tensors.quantization.quant_scheme import preset_name_to_scheme

    from llm_ladder.models.quantize import _weight_range

    args = preset_name_to_scheme("FP8_BLOCK", ["Linear"]).weights
    weight = torch.zeros(200, 300)
    weight[199, 299] = 5.0  # in the last, partial block of both dimensions
    lo, hi = _weight_range(weight, args)
    assert lo.shape == hi.shape
    assert hi.shape == (2, 3)
    assert hi[1, 2] == 5.0 and hi[0, 0] == 0.0


def test_fake_int8_is_exact_on_its_own_grid_and_lossy_off_it():
    from llm_ladder.models.sensitivity import fake_int8

    on_grid = torch.tensor([[-127.0, 0.0, 1.0, 127.0]])
    assert torch.equal(fake_int8(on_grid, dim=1), on_grid)
    outlier = torch.tensor([[1000.0, 0.3, -0.2, 0.1]])
    assert fake_int8(outlier, dim=1)[0, 1:].abs().sum() == 0  # small values vanish next to an outlier


def test_fused_projections_form_one_unit():
    from llm_ladder.models.sensitivity import unit_name

    assert unit_name("model.layers.3.self_attn.k_proj") == "model.layers.3.self_attn.qkv_proj"
    assert unit_name("model.layers.3.mlp.up_proj") == "model.layers.3.mlp.gate_up_proj"
    assert unit_name("model.layers.3.mlp.down_proj") == "model.layers.3.mlp.down_proj"


def test_the_outlier_layer_ranks_first(tiny_llama):
    from llm_ladder.models.sensitivity import kept_in_16_bits, rank_units

    units = rank_units(tiny_llama, samples=2, seq_len=64)
    assert len(units) == 8  # 2 layers × (qkv, o, gate_up, down)
    assert units[0].name == "model.layers.1.mlp.down_proj"
    assert units[0].error > 5 * units[len(units) // 2].error
    assert [u.name for u in kept_in_16_bits(units, 0.1)] == ["model.layers.1.mlp.down_proj"]
    qkv = next(u for u in units if u.name.endswith("qkv_proj"))
    assert len(qkv.members) == 3


def test_mixed_precision_keeps_the_sensitive_layers_in_16_bits(tiny_llama, tmp_path):
    from llm_ladder.models.quantize import quantize

    out = quantize(tiny_llama, "w8a8-mixed", tmp_path / "mixed")
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert sorted(config["ignore"]) == ["lm_head", "model.layers.1.mlp.down_proj"]
    recipe = json.loads((out / "ladder-recipe.json").read_text())
    assert list(recipe["kept_16bit"]) == ["model.layers.1.mlp.down_proj"] and recipe["units"] == 8


def test_fp8_block_checkpoint_has_one_scale_per_block(tiny_llama, tmp_path):
    from safetensors import safe_open

    from llm_ladder.models.quantize import quantize

    out = quantize(tiny_llama, "fp8-block", tmp_path / "fp8")
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["format"] == "float-quantized"
    with safe_open(out / "model.safetensors", "pt") as f:
        weight = f.get_tensor("model.layers.0.mlp.up_proj.weight")
        scale = f.get_tensor("model.layers.0.mlp.up_proj.weight_scale")
    assert weight.dtype == torch.float8_e4m3fn
    assert tuple(scale.shape) == (3, 2)  # 320 × 160 in 128 × 128 blocks, edges partial


def test_the_help_lists_the_schemes_it_writes_and_promises_no_torchao_checkpoint():
    from typer.testing import CliRunner

    from llm_ladder.cli.main import app
    from llm_ladder.models.quantize import SCHEMES

    text = CliRunner().invoke(app, ["models", "quantize", "--help"], env={"COLUMNS": "200"}).output
    assert all(name in text for name in SCHEMES)
    assert "torchao checkpoints" not in text and "vLLM quantizes at load" in " ".join(text.split())
