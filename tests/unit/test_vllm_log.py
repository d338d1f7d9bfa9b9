from llm_ladder.engines.vllm_log import expected_patterns, missing_patterns, parse_startup
from llm_ladder.plan.schema import Rung

# Lines as vLLM 0.32 (CPU) writes them, prefixes included.
COLD_LOG = """
(Worker pid=2969) INFO 11-25 14:48:51 [default_loader.py:501] Loading weights took 0.37 seconds
(Worker pid=2969) INFO 11-25 14:48:51 [gpu_model_runner.py:5150] Model loading took 0.11 GiB memory and 0.912 seconds
(Worker pid=2969) INFO 11-25 14:49:40 [backends.py:399] Compiling a graph for compile range (1, 2048) takes 41.20 s
(EngineCore pid=2947) INFO 11-25 14:49:50 [core.py:403] init engine (profile, create kv cache, warmup model) took 55.10 s (compilation: 48.30 s)
"""
# Each line's format string is vLLM 0.32's own (default_loader.py:502, backends.py:296, monitor.py:20 and :62,
# gpu_model_runner.py:6582), filled in as the workshop's Thor startup measured it.
WARM_GPU_LOG = """
(Worker pid=212) INFO 11-25 09:12:03 [default_loader.py:502] Loading weights took 24.72 seconds
(Worker pid=212) INFO 11-25 09:12:31 [backends.py:296] [backbone] Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 4.100 s
(Worker pid=212) INFO 11-25 09:12:32 [monitor.py:62] [backbone] torch.compile took 5.20 s in total
(Worker pid=212) INFO 11-25 09:12:55 [gpu_model_runner.py:6582] Graph capturing finished in 21 secs, took 0.52 GiB
"""
OLD_VLLM_COMPILE_LINE = "INFO 06-10 10:00:00 [monitor.py:33] torch.compile takes 5.20 s in total"  # vLLM <= 0.10


def test_cold_cpu_startup_stages():
    s = parse_startup(COLD_LOG)
    assert s.weights_s == 0.37 and s.weights_gib == 0.11
    assert s.compile_s == 48.30 and s.engine_init_s == 55.10
    assert s.graph_capture_s is None and s.compile_cache == "cold"


def test_warm_gpu_startup_stages():
    s = parse_startup(WARM_GPU_LOG)
    assert (s.weights_s, s.compile_s, s.graph_capture_s) == (24.72, 5.2, 21.0)
    assert s.compile_cache == "warm"
    assert parse_startup(OLD_VLLM_COMPILE_LINE).compile_s == 5.2


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


def test_kv_cache_bytes_come_from_the_engines_config_line():
    from llm_ladder.engines.vllm_log import kv_cache_bytes

    line = "Initializing a V1 LLM engine (v0.32.0) with config: model='m', dtype=torch.{}, ... kv_cache_dtype={}, "
    assert kv_cache_bytes(line.format("float32", "auto")) == 4  # fp32 on AVX2 CPUs: the old guess said 2
    assert kv_cache_bytes(line.format("bfloat16", "auto")) == 2
    assert kv_cache_bytes(line.format("bfloat16", "fp8_e4m3")) == 1
    assert kv_cache_bytes("no config line") is None


def test_a_hub_checkpoint_is_checked_from_the_hugging_face_cache_or_said_unchecked(tmp_path, monkeypatch):
    from llm_ladder.engines.vllm_log import unchecked

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--quant" / "snapshots" / "abc123"
    repo.mkdir(parents=True)
    (repo / "config.json").write_text('{"quantization_config": {"quant_method": "compressed-tensors"}}')
    (tmp_path / "models--org--quant" / "refs").mkdir()
    (tmp_path / "models--org--quant" / "refs" / "main").write_text("abc123")
    cached = Rung(name="r", model="org/quant")
    assert expected_patterns(cached, cached.model) == [r"quantization=compressed\-tensors\b"]
    assert unchecked(cached) == []
    missing = Rung(name="r", model="org/not-downloaded")
    assert expected_patterns(missing, missing.model) == []
    assert unchecked(missing) == [
        "checkpoint quantization not checked: no config.json for org/not-downloaded on this host"
    ]
