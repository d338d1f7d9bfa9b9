import pytest

from llm_ladder.models.store import COMPLETE_MARKER, DEFAULT_MODEL, ModelError, ModelStore, split_variant, store_dir


def test_store_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("LADDER_MODELS_DIR", str(tmp_path / "env"))
    assert store_dir() == tmp_path / "env"
    assert store_dir(tmp_path / "flag") == tmp_path / "flag"


def test_variants_split_on_known_schemes():
    assert split_variant(f"{DEFAULT_MODEL}-w4a16") == (DEFAULT_MODEL, "w4a16")
    assert split_variant(f"{DEFAULT_MODEL}-w8a8") == (DEFAULT_MODEL, "w8a8")
    assert split_variant("other") == ("other", None)


def test_the_store_knows_what_it_can_make(tmp_path):
    store = ModelStore(tmp_path)
    assert store.can_make(DEFAULT_MODEL) and store.can_make(f"{DEFAULT_MODEL}-w8a8")
    assert not store.can_make("llama") and not store.can_make("llama-w8a8")


def test_resolve_local_dirs_and_hub_ids(tmp_path, model_dir):
    store = ModelStore(tmp_path / "store")
    assert store.resolve(str(model_dir)) == str(model_dir)
    assert store.resolve("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        store.resolve(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="not a store name"):
        store.resolve("./missing/dir")


def test_only_complete_entries_are_listed_and_used(tmp_path):
    store = ModelStore(tmp_path)
    (tmp_path / "half-done").mkdir()
    done = tmp_path / "done"
    done.mkdir()
    (done / "config.json").write_text("{}")
    (done / COMPLETE_MARKER).write_text("ok")
    assert [m.name for m in store.list()] == ["done"]
    assert store.list()[0].quantization == "none"
    assert store.resolve("done") == str(done)
    with pytest.raises(ModelError, match="cannot make it"):
        store.pull("half-done")


def test_interrupted_build_leaves_no_entry(tmp_path):
    store = ModelStore(tmp_path)

    def boom(out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store._build("x", boom)
    assert not store.has("x") and not (tmp_path / "x").exists()


def test_cli_pull_and_list_name_the_store(tmp_path):
    from typer.testing import CliRunner

    from llm_ladder.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["models", "pull", "no-such-model", "--models-dir", str(tmp_path)])
    assert result.exit_code == 2 and "model 'no-such-model' is not in the store" in result.output
    result = runner.invoke(app, ["models", "list", "--models-dir", str(tmp_path)])
    assert result.exit_code == 0 and "no models in" in result.output
