"""`ladder probe`: one model, loaded offline with transformers, the numbers a researcher checks by hand — the
rendered chat prompt, its tokens, the first token's top candidates, prefill time and decode speed apart, peak
memory, and where every layer was placed (a layer silently offloaded to CPU is the classic 1 tok/s trap).

This is the CPU path (dynamic cache); the GPU fast paths (static cache, torch.compile) are issue 8's next step.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

from llm_ladder.models import ModelStore
from llm_ladder.telemetry import GIB


class ProbeError(ValueError):
    pass


class Candidate(BaseModel):
    token: str
    id: int
    probability: float


class ProbeResult(BaseModel):
    model: str
    revision: str
    """The directory's content hash (file names, sizes and JSON contents): what exactly was loaded."""
    device: str
    dtype: str
    path: str = "dynamic cache"
    load_s: float
    prompt: str
    prompt_tokens: list[tuple[int, str]]
    first_token_top: list[Candidate]
    generated_tokens: int
    prefill_s: float
    decode_tps: float | None
    peak_memory_gib: float
    placement: dict[str, str]
    warnings: list[str] = []
    text: str

    def __str__(self) -> str:
        top = ", ".join(f"{c.token!r} {c.probability:.1%}" for c in self.first_token_top)
        rows = [
            ("model", f"{self.model} @ {self.revision[:12]} on {self.device} ({self.dtype}, {self.path})"),
            ("load", f"{self.load_s:.1f} s"),
            ("prompt", f"{len(self.prompt_tokens)} tokens"),
            ("first token top-5", top),
            ("prefill", f"{self.prefill_s * 1000:.0f} ms"),
            (
                "decode",
                f"{self.decode_tps:.1f} tok/s over {self.generated_tokens} tokens" if self.decode_tps else "n/a",
            ),
            ("peak memory", f"{self.peak_memory_gib:.2f} GiB"),
            ("placement", ", ".join(sorted(set(self.placement.values())))),
            ("answer", self.text),
        ]
        lines = [f"{k:>18}  {v}" for k, v in rows] + [f"{'WARNING':>18}  {w}" for w in self.warnings]
        return "\n".join(lines)


def resolve(model: str, store: ModelStore | None = None) -> Path:
    store = store or ModelStore()
    if store.has(model) or store.can_make(model):
        return store.pull(model)
    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise ProbeError(f"model {model!r} is neither in the model store nor a local directory with a config.json")


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
        if f.suffix == ".json":
            digest.update(f.read_bytes())
    return digest.hexdigest()


def render(tokenizer: Any, prompt: str, chat: bool, thinking: bool | None) -> str:
    """The prompt as the model sees it: through its chat template when `chat`, with the thinking toggle."""
    if not chat:
        if thinking is not None:
            raise ProbeError("--thinking needs --chat (it is a switch of the chat template)")
        return prompt
    template = tokenizer.chat_template or ""
    if not template:
        raise ProbeError("this tokenizer has no chat template: probe without --chat")
    extra = {}
    if thinking is not None:
        if "enable_thinking" not in template:
            raise ProbeError("this model's chat template has no enable_thinking switch: drop --thinking")
        extra["enable_thinking"] = thinking
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **extra)


class _StepClock:
    """A logits processor that only notes when each generated token's logits were ready."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.times.append(time.perf_counter())
        return scores


def top_candidates(model: Any, tokenizer: Any, ids: Any, mask: Any, k: int = 5) -> tuple[list[Candidate], float]:
    """The first token's top-k from one forward pass over the prompt, and that pass's time: the prefill."""
    import torch

    with torch.inference_mode():
        model(input_ids=ids[:, :1], attention_mask=mask[:, :1])  # warm-up: the first call pays for setup
        start = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask).logits[0, -1].float()
        prefill_s = time.perf_counter() - start
    probs = torch.softmax(logits, dim=-1)
    values, indices = probs.topk(k)
    top = [
        Candidate(token=tokenizer.decode([int(i)]), id=int(i), probability=float(v))
        for v, i in zip(values, indices, strict=True)
    ]
    return top, prefill_s


def _placement(model: Any, device: str) -> tuple[dict[str, str], list[str]]:
    placement = {k: str(v) for k, v in (getattr(model, "hf_device_map", None) or {"": device}).items()}
    offloaded = sorted(k or "model" for k, v in placement.items() if v in ("cpu", "disk"))
    warnings = []
    if offloaded and device.startswith("cuda"):
        shown = ", ".join(offloaded[:4])
        warnings.append(f"{len(offloaded)} module(s) on CPU or disk while a GPU is used ({shown}): expect ~1 tok/s")
    return placement, warnings


def probe(
    model: str,
    prompt: str = "What is the capital of France?",
    *,
    chat: bool = True,
    thinking: bool | None = None,
    max_new_tokens: int = 64,
    ignore_eos: bool = False,
    device: str = "cpu",
    dtype: str = "bfloat16",
    store: ModelStore | None = None,
) -> ProbeResult:
    """Load `model` offline, generate greedily from `prompt` (exactly `max_new_tokens` with `ignore_eos`), and
    measure (see ProbeResult)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    path = resolve(model, store)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype)).to(device)
    load_s = time.perf_counter() - start
    text = render(tokenizer, prompt, chat, thinking)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(device)
    top, prefill_s = top_candidates(loaded, tokenizer, enc.input_ids, enc.attention_mask)
    clock = _StepClock()
    with torch.inference_mode():
        out = loaded.generate(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,  # always explicit: pad == eos would otherwise be guessed
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens if ignore_eos else None,  # a fixed length makes speeds comparable
            do_sample=False,
            logits_processor=LogitsProcessorList([clock]),
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    new = out[0, enc.input_ids.shape[1] :]
    steps = clock.times
    decode = (len(steps) - 1) / (steps[-1] - steps[0]) if len(steps) > 1 and steps[-1] > steps[0] else None
    placement, warnings = _placement(loaded, device)
    return ProbeResult(
        model=model,
        revision=content_hash(path),
        device=device,
        dtype=dtype,
        load_s=load_s,
        prompt=text,
        prompt_tokens=[(int(i), tokenizer.decode([int(i)])) for i in enc.input_ids[0]],
        first_token_top=top,
        generated_tokens=len(new),
        prefill_s=prefill_s,
        decode_tps=decode,
        peak_memory_gib=_peak_memory(device),
        placement=placement,
        warnings=warnings,
        text=tokenizer.decode(new, skip_special_tokens=True),
    )


def _peak_memory(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / GIB
    return psutil.Process().memory_info().rss / GIB
