"""Where `ladder probe` gets its model, always offline: the model store (the embedded default included), a local
directory, the Hugging Face cache at a pinned revision, or — for speed and memory work on a machine with no model
hub — an architecture with random weights (a shipped shape such as `llama-3.1-8b`, or any of the above's config).

Every source is pinned: the Hugging Face cache by the commit a revision resolves to, a plain directory by a hash of
its contents, a shape by its own name.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_ladder.models.store import HUB_ID, ModelError, ModelStore, hub_cache

SHAPES_DIR = Path(__file__).parent / "shapes"
"""config.json files of architectures people probe, for --random-weights where nothing can be downloaded."""


class ProbeError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    name: str
    path: Path | None
    """A model directory (config, tokenizer, weights); None for a shipped shape."""
    revision: str
    pinned_by: str
    """'commit' (Hugging Face cache), 'content hash' (a plain directory) or 'shape' (random weights)."""
    random_weights: bool = False


def shapes() -> list[str]:
    return sorted(p.stem for p in SHAPES_DIR.glob("*.json"))


def resolve(model: str, revision: str | None = None, store: ModelStore | None = None, random: bool = False) -> Source:
    """Find `model` without touching the network, or raise ProbeError saying what exists instead."""
    if random and model in shapes():
        if revision:
            raise ProbeError(f"--revision does not apply to the shipped shape {model!r}")
        return Source(model, None, model, "shape", random_weights=True)
    path = _local(model, store)
    if path is not None:
        return Source(model, path, _pin_directory(model, path, revision), "content hash", random)
    if HUB_ID.match(model):
        path = _snapshot(model, revision)
        return Source(model, path, path.name, "commit", random)
    extra = f"; with --random-weights also one of: {', '.join(shapes())}" if random else ""
    raise ProbeError(
        f"model {model!r} is neither in the model store nor a local directory with a config.json nor a repo id "
        f"in the Hugging Face cache{extra}"
    )


def _local(model: str, store: ModelStore | None) -> Path | None:
    store = store or ModelStore()
    if store.has(model) or store.can_make(model):
        try:
            return store.pull(model)
        except ModelError as err:
            raise ProbeError(str(err)) from err
    path = Path(model).expanduser()
    return path if path.is_dir() and (path / "config.json").is_file() else None


def content_hash(path: Path) -> str:
    """File names and sizes, and the JSON files' contents: cheap on multi-GB weights, and any re-export shows."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
        if f.suffix == ".json":
            digest.update(f.read_bytes())
    return digest.hexdigest()


def _pin_directory(model: str, path: Path, revision: str | None) -> str:
    digest = content_hash(path)
    if revision and not digest.startswith(revision):
        raise ProbeError(
            f"--revision {revision!r} does not match {model}: a plain directory has no commits; its content hash "
            f"is {digest[:12]} (pass a prefix of it to pin it)"
        )
    return digest


def _snapshot(repo: str, revision: str | None) -> Path:
    """The cached snapshot a revision (branch, tag or commit; default main) points to, via huggingface_hub."""
    from huggingface_hub import scan_cache_dir, snapshot_download
    from huggingface_hub.errors import CacheNotFound, LocalEntryNotFoundError

    cache = hub_cache()
    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True, cache_dir=cache))
    except LocalEntryNotFoundError:
        pass
    try:
        cached = next((r for r in scan_cache_dir(cache).repos if r.repo_id == repo), None)
    except CacheNotFound:
        cached = None
    if cached is None:
        raise ProbeError(f"model {repo!r} is not in the Hugging Face cache ({cache}) and probe never downloads")
    known = ", ".join(
        f"{' '.join(sorted(r.refs)) + ' → ' if r.refs else ''}{r.commit_hash[:12]}" for r in cached.revisions
    )
    raise ProbeError(f"unknown revision {revision or 'main'!r} of {repo} in the Hugging Face cache (cached: {known})")


def byte_tokenizer() -> Any:
    """A byte-level tokenizer with a minimal chat template, for shapes (random weights need no real vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    raw = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<|user|>", "<|assistant|>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|end|>", additional_special_tokens=specials)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tok


@dataclass
class Loaded:
    tokenizer: Any
    model: Any
    load_s: float


def load(source: Source, device: str, dtype: str) -> Loaded:
    """Tokenizer and model on `device`, local files only; random weights are initialized on the device itself."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    if source.path is None:
        tokenizer = byte_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(source.path, local_files_only=True)
    torch_dtype = getattr(torch, dtype)
    if source.random_weights:
        if source.path is None:
            fields = json.loads((SHAPES_DIR / f"{source.name}.json").read_text())
            config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        else:
            config = AutoConfig.from_pretrained(source.path, local_files_only=True)
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            source.path, local_files_only=True, dtype=torch_dtype, device_map=device
        )
    return Loaded(tokenizer, model.eval(), time.perf_counter() - start)
