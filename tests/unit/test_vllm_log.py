from llm_ladder.engines.vllm_log import expected_patterns, missing_patterns, parse_startup
from llm_ladder.plan import Rung

# Lines as vLLM 0.32 (CPU) writes them, prefixes included.
COLD_LOG = """
(Worker pid=2969) INFO 11-25 14:48:51 [default_loader.py:501] Loading weights took 0.37 seconds
(Worker pid=2969) INFO 11-25 14:48:51 [gpu_model_runner.py:5150] Model loading took 0.11 GiB memory and 0.912 seconds
(Worker pid=2969) INFO 11-25 14:49:40 [backends.py:399] Compiling a graph for compile range (1, 2048) takes 41.20 s
(EngineCore pid=2947) INFO 11-25 14:49:50 [core.py:403] init engine (profile, create kv cache, warmup model) took 55.10 s (compilation: 48.30 s)
"""
WARM_GPU_LOG = """
INFO: Loading weights took 24.72 seconds
INFO [backends.py:296] Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 4.1 s
INFO: torch.compile takes 5.2 s in total
INFO: Graph capturing finished in 21 secs, took 0.52 GiB
"""


def test_cold_cpu_startup_stages():
    s = parse_startup(COLD_LOG)
    assert s.weights_s == 0.37 and s.weights_gib == 0.11
    assert s.compile_s == 48.30 and s.engine_init_s == 55.10
    assert s.graph_capture_s is None and s.compile_cache == "cold"


def test_warm_gpu_startup_stages():
    s = parse_startup(WARM_GPU_LOG)
    assert (s.weights_s, s.compile_s, s.graph_capture_s) == (24.72, 5.2, 21.0)
    assert s.compile_cache == "warm"


def test_recompile_after_cache_load_failure_is_named():
    text = (
        "WARNING [decorators.py:333] [backbone] Compiling model again due to a load failure from /root/.cache/vllm/x\n"
        "INFO [decorators.py:743] [backbone] saved AOT compiled function to /root/.cache/vllm/x"
    )
    assert parse_startup(text).compile_cache == "cache-failed"
    assert parse_startup(text.splitlines()[1]).compile_cache == "cold"
    assert parse_startup("").compile_cache == "n/a"


def test_expected_patterns_follow_the_checkpoint_and_the_flags(tmp_path):
    (tmp_path / "config.json").write_text('{"quantization_config": {"quant_method": "compressed-tensors"}}')
    rung = Rung(name="r", model="m", kv_cache_dtype="fp8", speculative={"method": "ngram"}, expect_log=["Kernel"])
    patterns = expected_patterns(rung, str(tmp_path))
    log = (
        "config: speculative_config=SpeculativeConfig(method='ngram', model=None), quantization=compressed-tensors, "
        "kv_cache_dtype=fp8, ... Using CPUWNA16LinearKernel"
    )
    assert missing_patterns(log, patterns) == []
    assert len(missing_patterns("quantization=None, kv_cache_dtype=auto", patterns)) == 4


def test_plain_model_expects_nothing(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert expected_patterns(Rung(name="r", model="m"), str(tmp_path)) == []
