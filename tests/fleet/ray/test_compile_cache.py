"""`ladder fleet push --compile-cache`: this machine's vLLM compile cache lands in each node's own cache."""

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.fleet.connect import connect
from llm_ladder.fleet.manifest import MANIFEST_FILE
from llm_ladder.models.store import COMPLETE_MARKER, ModelStore
from llm_ladder.testing.ray_cluster import local_cluster

runner = CliRunner()


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    with local_cluster(2, node_env=lambda i: {"VLLM_CACHE_ROOT": str(root / f"node{i}"),
                                              "LADDER_MODELS_DIR": str(root / f"store{i}")}) as cluster:  # fmt: skip
        connect(cluster.address)
        yield cluster, root


def test_the_compile_cache_goes_with_the_model_to_nodes_built_alike(caches, monkeypatch):
    cluster, root = caches
    here = root / "driver" / "torch_compile_cache"
    for key in ("0a1b2c3d4e", "5f6a7b8c9d"):
        (here / key / "rank_0_0" / "backbone").mkdir(parents=True)
        (here / key / "rank_0_0" / "backbone" / "artifact").write_bytes(key.encode() * 1000)
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(root / "driver"))
    store = ModelStore(root / "store")
    model = store.path("tiny")
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / COMPLETE_MARKER).write_text("ok\n")
    r = runner.invoke(app, ["fleet", "push", "tiny", "--address", cluster.address, "--compile-cache",
                            "--models-dir", str(root / "store")])  # fmt: skip
    assert r.exit_code == 0, r.output
    for i in (1, 2):
        assert (root / f"store{i}" / "tiny" / "config.json").is_file()
        for key in ("0a1b2c3d4e", "5f6a7b8c9d"):
            entry = root / f"node{i}" / "torch_compile_cache" / key
            assert (entry / "rank_0_0" / "backbone" / "artifact").read_bytes() == key.encode() * 1000
            assert (entry / MANIFEST_FILE).is_file()
    assert "compile cache" in r.output

    again = runner.invoke(app, ["fleet", "push", "tiny", "--address", cluster.address, "--compile-cache",
                                "--models-dir", str(root / "store")])  # fmt: skip
    assert again.exit_code == 0 and "copied" not in again.output, again.output
