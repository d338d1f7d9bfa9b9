"""A rung's second start loads vLLM CPU's compile cache instead of compiling again (vllm_cpu_fixes, AOT load)."""

from llm_ladder.engines.vllm import VllmEngine
from llm_ladder.engines.vllm_cpu_fixes import AOT_FIX_LOG
from llm_ladder.models.store import ModelStore
from llm_ladder.plan.schema import Rung


def test_second_start_is_warm(tmp_path, monkeypatch):
    monkeypatch.setenv("LADDER_CACHE_DIR", str(tmp_path / "cache"))  # empty: the first start compiles
    monkeypatch.delenv("VLLM_CACHE_ROOT", raising=False)
    model = ModelStore().resolve("smollm2-135m-instruct")
    engine = VllmEngine()
    starts = []
    for i in range(2):
        rung = Rung(
            name=f"bf16-{i}", model=model, dtype="bfloat16", max_model_len=512, env={"VLLM_CPU_KVCACHE_SPACE": "1"}
        )
        server = engine.start(rung, model, tmp_path)
        try:
            starts.append(server.startup)
        finally:
            assert engine.stop(server).leftover_pids == []
    cold, warm = starts
    log = (tmp_path / "logs" / "bf16-1.log").read_text()
    assert (cold.compile_cache, warm.compile_cache) == ("cold", "warm"), log[-2000:]
    assert "Compiling model again" not in log and AOT_FIX_LOG in log
    assert (tmp_path / "cache" / "vllm" / "torch_compile_cache").is_dir()
    assert warm.engine_init_s < cold.engine_init_s and warm.total_s < cold.total_s
