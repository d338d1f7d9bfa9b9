import json
import stat
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.vllm import rung_args
from llm_ladder.models.store import ModelStore
from llm_ladder.ops.deploy import write_compose
from llm_ladder.plan.schema import Rung

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "compose-spec.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)  # the spec's own draft (its $schema URL lacks the trailing #)


def _write(tmp_path, rung):
    compose_path, env_path = write_compose(rung, ModelStore(tmp_path / "store"), tmp_path / "deploy")
    return yaml.safe_load(compose_path.read_text()), env_path


def test_compose_validates_and_serves_exactly_the_rung(tmp_path):
    rung = Rung(
        name="fp4-eagle3",
        model="nvidia/Llama-3.1-8B-Instruct-FP4",
        quantization="modelopt_fp4",
        gpu_memory_utilization=0.8,
        speculative={"method": "eagle3", "model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", "num_speculative_tokens": 3},
        env={"HF_TOKEN": "hf_real_secret", "VLLM_LOGGING_LEVEL": "INFO"},
    )
    compose, env_path = _write(tmp_path, rung)
    VALIDATOR.validate(compose)
    vllm = compose["services"]["vllm"]
    assert vllm["command"][3:-4] == rung_args(rung, rung.model)  # hub id: from the mounted HF cache
    assert vllm["command"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert vllm["image"] == "${VLLM_IMAGE:-nvcr.io/nvidia/vllm:25.09-py3}"
    assert vllm["environment"]["HF_TOKEN"] == "${HF_TOKEN:-}" and vllm["environment"]["VLLM_LOGGING_LEVEL"] == "INFO"
    assert vllm["healthcheck"]["start_period"] and "/health" in vllm["healthcheck"]["test"][-1]
    assert any(v.endswith(":/root/.cache/vllm") for v in vllm["volumes"])  # the compile cache survives restarts
    webui = compose["services"]["open-webui"]
    assert webui["environment"]["OPENAI_API_BASE_URL"] == "http://vllm:8000/v1"
    assert webui["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    assert compose["services"]["lab"]["profiles"] == ["lab"]
    text = (tmp_path / "deploy" / "compose.yml").read_text() + env_path.read_text()
    assert "hf_real_secret" not in text  # secrets stay in the user's environment
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600 and "\nHF_TOKEN=\n" in env_path.read_text()


def test_store_models_local_directories_and_gpt_oss(tmp_path, model_dir):
    compose, _ = _write(tmp_path, Rung(name="bf16", model="smollm2-135m-instruct"))
    assert compose["services"]["vllm"]["command"][4] == "/models/smollm2-135m-instruct"
    compose, _ = _write(tmp_path, Rung(name="local", model=str(model_dir)))
    VALIDATOR.validate(compose)
    assert f"{model_dir.resolve()}:/models/model:ro" in compose["services"]["vllm"]["volumes"]
    compose, _ = _write(tmp_path, Rung(name="oss", model="openai/gpt-oss-120b"))
    assert compose["services"]["vllm"]["environment"]["TIKTOKEN_ENCODINGS_BASE"] == "/etc/encodings"


def test_ladder_deploy_from_a_plan_and_bad_targets(tmp_path):
    runner = CliRunner()
    out = tmp_path / "d"
    result = runner.invoke(app, ["deploy", "thor-llama31-8b", "--rung", "fp8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    VALIDATOR.validate(yaml.safe_load((out / "compose.yml").read_text()))
    result = runner.invoke(app, ["deploy", "thor-llama31-8b", "--rung", "fp8", "--target", "k8s"])
    assert result.exit_code == 2 and "unknown target 'k8s'" in result.output


@pytest.mark.parametrize("bad", [{"services": {"vllm": {"ports": "8000"}}}, {"services": {"x": {"imagee": "typo"}}}])
def test_the_schema_really_rejects_bad_files(bad):
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(bad)
