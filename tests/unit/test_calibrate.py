"""Calibrated quantization: its own venv made from the `calibrate` extra, the job's calibration samples."""

import sys

import pytest

from llm_ladder.data import DATA_DIR
from llm_ladder.models import calibrate
from llm_ladder.models.calibration_job import load_records
from llm_ladder.models.quantize import SCHEMES
from llm_ladder.models.store import DEFAULT_MODEL, ModelError, split_variant


def test_calibrated_variants_are_store_names():
    assert split_variant(f"{DEFAULT_MODEL}-w8a8-gptq") == (DEFAULT_MODEL, "w8a8-gptq")
    assert split_variant(f"{DEFAULT_MODEL}-w4a16-gptq") == (DEFAULT_MODEL, "w4a16-gptq")
    assert SCHEMES["w8a8-gptq"].job == "w8a8-sq-gptq" and SCHEMES["w8a8"].job is None


def test_the_venv_installs_the_extra_torch_first_and_only_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LADDER_CALIBRATE_VENV", str(tmp_path / "venv"))
    ran = []

    def run(cmd, log):
        ran.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            (tmp_path / "venv" / "bin").mkdir(parents=True)
            (tmp_path / "venv" / "bin" / "python").write_text("")

    monkeypatch.setattr(calibrate, "_run", run)
    python = calibrate.ensure_venv(notify=lambda m: None)
    assert python == tmp_path / "venv" / "bin" / "python"
    assert ran[0][:3] == [sys.executable, "-m", "venv"]
    assert ran[1][-1] == "torch==2.13.0"  # the CPU wheel on disk, before anything can pull a CUDA build
    assert "llmcompressor==0.14.0.1" in ran[2] and "torch==2.13.0" not in ran[2]
    assert ran[3][-3:] == list(calibrate.UNLOADABLE)
    ran.clear()
    calibrate.ensure_venv(notify=lambda m: None)
    assert ran == []  # made already, for these requirements


def test_a_failing_step_is_one_error_with_the_log_tail(tmp_path):
    with pytest.raises(ModelError, match=r"exited with 3:\n.*boom"):
        calibrate._run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "log")


def test_shipped_calibration_text_has_chats_and_prose_and_is_not_the_evaluation_text():
    chats, texts = load_records(calibrate.CALIBRATION_TEXT)
    assert len(chats) > 50 and len(texts) > 50
    evaluation = (DATA_DIR / "eval_text.md").read_text()
    assert evaluation[200:400] not in calibrate.CALIBRATION_TEXT.read_text()


def test_job_samples_alternate_chat_and_text_at_the_sequence_length():
    transformers = pytest.importorskip("transformers")
    from llm_ladder.models.calibration_job import samples
    from llm_ladder.models.store import ModelStore

    store = ModelStore()
    if not store.has(DEFAULT_MODEL):
        pytest.skip("the default model is not materialized")
    pytest.importorskip("datasets")
    tok = transformers.AutoTokenizer.from_pretrained(store.path(DEFAULT_MODEL))
    data = samples(tok, calibrate.CALIBRATION_TEXT, 4, 128)
    assert [len(x) for x in data["input_ids"]] == [128] * 4
    assert "<|im_start|>user" in tok.decode(data["input_ids"][0])
