"""The model store on real weights: the embedded default and a compressed-tensors quantization."""

import json

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.models.store import DEFAULT_MODEL, ModelStore

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


@pytest.mark.timeout(2400)
def test_calibrated_w8a8_is_made_in_its_own_venv_and_served(tmp_path, monkeypatch):
    """SmoothQuant + GPTQ through llm-compressor in the calibration venv (a small calibration set to keep CI short),
    then vLLM CPU serves the checkpoint with its int8 kernel and answers."""
    import httpx

    from llm_ladder.engines.vllm import VllmEngine
    from llm_ladder.plan.schema import Rung

    monkeypatch.setenv("LADDER_CALIBRATION_SAMPLES", "16")
    monkeypatch.setenv("LADDER_CALIBRATION_SEQ_LEN", "256")
    store = ModelStore(tmp_path / "models")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / DEFAULT_MODEL).symlink_to(ModelStore().pull(DEFAULT_MODEL))
    result = runner.invoke(app, ["models", "quantize", DEFAULT_MODEL, "--scheme", "w8a8-gptq",
                                 "--models-dir", str(tmp_path / "models")])  # fmt: skip
    assert result.exit_code == 0, result.output
    path = store.path(f"{DEFAULT_MODEL}-w8a8-gptq")
    q = json.loads((path / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and q["format"] == "int-quantized" and "lm_head" in q["ignore"]
    recipe = json.loads((path / "ladder-recipe.json").read_text())
    assert recipe["scheme"] == "w8a8-sq-gptq" and recipe["samples"] == 16
    assert "SmoothQuantModifier" in (path / "recipe.yaml").read_text()
    rung = Rung(name="int8", model=str(path), enforce_eager=True, max_model_len=512,
                env={"VLLM_CPU_KVCACHE_SPACE": "1"}, expect_log=["CPUInt8ScaledMMLinearKernel"])  # fmt: skip
    engine = VllmEngine()
    server = engine.start(rung, str(path), tmp_path)
    try:
        assert engine.verify(rung, server) == []
        body = {"model": server.model_name, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 16, "temperature": 0}  # fmt: skip
        answer = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120).json()
        text = answer["choices"][0]["message"]["content"]
        # 16 samples calibrate coarsely (one run answered "L'Étoile de la Cité, la Cité..."): served and answering
        # is what is checked here; quality is the climb's and the bench's job
        assert answer["choices"][0]["finish_reason"] in {"length", "stop"} and len(text.split()) >= 3, text
    finally:
        assert engine.stop(server).leftover_pids == []
