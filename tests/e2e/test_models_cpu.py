"""The model store on real weights: the embedded default and a compressed-tensors quantization."""

import json

from typer.testing import CliRunner

from llm_ladder.cli import app
from llm_ladder.models import DEFAULT_MODEL, ModelStore

runner = CliRunner()


def test_pull_is_idempotent_and_quantize_writes_a_vllm_config():
    store = ModelStore()
    base = store.pull(DEFAULT_MODEL)
    assert (base / "model.safetensors").exists() and (base / "tokenizer.json").exists()
    assert "chat_template" in (base / "tokenizer_config.json").read_text() or (base / "chat_template.jinja").exists()
    stamp = (base / "model.safetensors").stat().st_mtime_ns
    assert store.pull(DEFAULT_MODEL) == base  # idempotent: the second call finds it, nothing is rebuilt
    assert (base / "model.safetensors").stat().st_mtime_ns == stamp
    result = runner.invoke(app, ["models", "quantize", DEFAULT_MODEL, "--scheme", "w8a8"])
    assert result.exit_code == 0, result.output
    q = json.loads((store.path(f"{DEFAULT_MODEL}-w8a8") / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and q["format"] == "int-quantized"
    assert q["config_groups"]["group_0"]["input_activations"]["dynamic"] is True
    listing = runner.invoke(app, ["models", "list"]).output
    assert DEFAULT_MODEL in listing and "int-quantized" in listing


def test_unknown_scheme_is_one_clear_error():
    result = runner.invoke(app, ["models", "quantize", DEFAULT_MODEL, "--scheme", "fp3"])
    assert result.exit_code == 2 and "unknown scheme 'fp3'" in result.output
