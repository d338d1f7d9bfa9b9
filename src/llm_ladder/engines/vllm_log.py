"""Reading a vLLM server log: startup stages, and proof of the quantization / speculation actually in use."""

from __future__ import annotations

import re

from llm_ladder.engines.base import StartupStages
from llm_ladder.models.store import config_file, model_config
from llm_ladder.plan.schema import Rung

_NUM = r"([0-9]+(?:\.[0-9]+)?)"
STAGE_PATTERNS = {
    "weights_s": re.compile(rf"Loading weights took {_NUM} seconds"),
    "compile_s": re.compile(rf"torch\.compile (?:took|takes) {_NUM} s in total"),  # "took" since 0.11, "takes" before
    "graph_capture_s": re.compile(rf"Graph capturing finished in {_NUM} secs"),
    "engine_init_s": re.compile(rf"init engine \(profile, create kv cache, warmup model\) took {_NUM} s"),
}
WEIGHTS_GIB = re.compile(rf"Model loading took {_NUM} GiB")
COMPILE_COMPILATION = re.compile(rf"\(compilation: {_NUM} s")
COMPILE_WARMUP = re.compile(rf"Initial profiling/warmup run took {_NUM} s")
COLD = re.compile(r"Compiling a graph for (?:dynamic shape|compile range)|saved AOT compiled function")
RELOAD_FAILED = re.compile(r"Compiling model again due to a load failure")
WARM = re.compile(r"Directly load the compiled graph|Directly load AOT compilation")


def _last_float(pattern: re.Pattern[str], text: str) -> float | None:
    found = pattern.findall(text)
    return float(found[-1]) if found else None


def parse_startup(text: str) -> StartupStages:
    """Startup stages as vLLM logged them; absent stages stay None (eager mode has no compile or graphs)."""
    stages = {key: _last_float(pat, text) for key, pat in STAGE_PATTERNS.items()}
    for fallback in (COMPILE_COMPILATION, COMPILE_WARMUP):  # vLLM CPU logs only the compile warmup run
        if stages["compile_s"] is None:
            stages["compile_s"] = _last_float(fallback, text)
    cache = (
        "cache-failed"  # a compile cache was there, vLLM could not load it and compiled again
        if RELOAD_FAILED.search(text)
        else "cold"
        if COLD.search(text)
        else "warm"
        if WARM.search(text)
        else "n/a"
    )
    return StartupStages(**stages, compile_cache=cache, weights_gib=_last_float(WEIGHTS_GIB, text))


def _checkpoint_quantization(model: str) -> str | None:
    q = (model_config(model) or {}).get("quantization_config") or {}
    return q.get("quant_method")


def unchecked(rung: Rung) -> list[str]:
    """What `expected_patterns` could not check for this rung, and why (reported as n/a, not passed over)."""
    if rung.args.get("quantization") or config_file(rung.model):
        return []
    return [f"checkpoint quantization not checked: no config.json for {rung.model} on this host"]


DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def kv_cache_bytes(text: str) -> float | None:
    """Bytes per KV-cache element from the engine's config line: fp8 kinds 1, `auto` the model dtype's size."""
    kv, dtype = re.search(r"kv_cache_dtype=(\w+)", text), re.search(r"\bdtype=torch\.(\w+)", text)
    if kv and kv.group(1).startswith("fp8"):
        return 1
    if kv and kv.group(1) != "auto":
        return DTYPE_BYTES.get(kv.group(1))
    return DTYPE_BYTES.get(dtype.group(1)) if dtype else None


def expected_patterns(rung: Rung, model_path: str) -> list[str]:
    """Regexes the log must contain for the rung to be what its config says, plus the plan's own."""
    patterns = list(rung.expect_log)
    quant = rung.args.get("quantization") or _checkpoint_quantization(model_path)
    if quant:
        patterns.append(rf"quantization={re.escape(quant)}\b")
    if (kv := rung.args.get("kv_cache_dtype")) and kv != "auto":
        patterns.append(rf"kv_cache_dtype={re.escape(kv)}\b")
    if rung.speculative:
        patterns.append(rf"speculative_config=SpeculativeConfig\(method='{re.escape(rung.speculative['method'])}'")
    return patterns


def missing_patterns(text: str, patterns: list[str]) -> list[str]:
    return [p for p in patterns if not re.search(p, text)]
