"""Which layers a quantization hurts most: the basis of mixed precision (sensitive layers kept in 16 bits).

Each Linear's output on the shipped calibration text is compared with the output of its fake-quantized twin
(weights and activations rounded as the scheme would round them); the relative error, summed over the layers
vLLM fuses into one GEMM (q/k/v, gate/up: they must share a scheme), ranks the units. Cheap (one forward pass over
a few thousand tokens, no gradients) and run in the tool's own environment, so round-to-nearest plus a short
ignore list gives a rung between RTN and calibration in both quality and the time it takes to make.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from llm_ladder.models.calibrate import CALIBRATION_TEXT

FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
         "up_proj": "gate_up_proj"}  # fmt: skip
"""vLLM's packed modules for Llama-style models: members of one fused GEMM need one scheme."""


@dataclass(frozen=True)
class Unit:
    """One GEMM as vLLM runs it: its checkpoint module names and its relative output error under the scheme."""

    name: str
    members: tuple[str, ...]
    error: float


def unit_name(module: str) -> str:
    parent, _, leaf = module.rpartition(".")
    return f"{parent}.{FUSED[leaf]}" if leaf in FUSED else module


def fake_int8(x, dim: int):
    """Symmetric int8 round trip with one scale per slice along `dim` (per token for activations, per output
    channel for weights): what W8A8 does to the values."""
    scale = x.abs().amax(dim=dim, keepdim=True).clamp(min=1e-8) / 127.0
    return (x / scale).round().clamp(-128, 127) * scale


def _tokens(tok, count: int, length: int):
    import torch

    text = re.sub(r"\n%%\n", "\n\n", CALIBRATION_TEXT.read_text(encoding="utf-8"))
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    count = max(1, min(count, len(ids) // length))
    return torch.stack([ids[i * length : (i + 1) * length] for i in range(count)])


def rank_units(model_dir: Path, samples: int = 8, seq_len: int = 256) -> list[Unit]:
    """Units of `model_dir` (lm_head excluded), most sensitive to W8A8 first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    err: dict[str, float] = {}
    norm: dict[str, float] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            hooks.append(module.register_forward_hook(_measure(name, err, norm)))
    with torch.no_grad():
        model(_tokens(tok, samples, seq_len))
    for hook in hooks:
        hook.remove()
    return _units(err, norm)


def _measure(name: str, err: dict[str, float], norm: dict[str, float]):
    def hook(module, inputs, output):
        x = inputs[0].reshape(-1, inputs[0].shape[-1])
        approx = fake_int8(x, dim=1) @ fake_int8(module.weight, dim=1).T
        exact = output.reshape(-1, output.shape[-1]) - (module.bias if module.bias is not None else 0)
        err[name] = err.get(name, 0.0) + float((approx - exact).pow(2).sum())
        norm[name] = norm.get(name, 0.0) + float(exact.pow(2).sum())

    return hook


def _units(err: dict[str, float], norm: dict[str, float]) -> list[Unit]:
    groups: dict[str, list[str]] = {}
    for name in err:
        groups.setdefault(unit_name(name), []).append(name)
    units = [
        Unit(unit, tuple(sorted(members)), sum(err[m] for m in members) / max(sum(norm[m] for m in members), 1e-30))
        for unit, members in groups.items()
    ]
    return sorted(units, key=lambda u: u.error, reverse=True)


def kept_in_16_bits(units: list[Unit], fraction: float) -> list[Unit]:
    """The most sensitive `fraction` of the units (at least one)."""
    return units[: max(1, round(len(units) * fraction))]
