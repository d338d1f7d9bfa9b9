"""`ladder probe`: one model, loaded offline with transformers, the numbers a researcher checks by hand — the
rendered chat prompt, its tokens, the top candidates of the first (and any) generated token, prefill time and
decode speed apart, peak memory, where every layer was placed (a layer silently offloaded to CPU is the classic
1 tok/s trap) — and on a GPU the fastest decode path that works (decode_paths), its share of the memory-bandwidth
roofline and its energy per token.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llm_ladder.measure.roofline import Bandwidth, Roofline, device_bandwidth, kv_bytes_per_token, roofline
from llm_ladder.measure.telemetry import GIB
from llm_ladder.models.store import ModelStore
from llm_ladder.probe.decode_paths import Attempt, Generation, Request, candidates, decode
from llm_ladder.probe.source import ProbeError, Source, load, resolve

__all__ = ["ProbeError", "ProbeResult", "probe", "render"]


class Candidate(BaseModel):
    token: str
    id: int
    probability: float


class ProbeResult(BaseModel):
    model: str
    revision: str
    pinned_by: str
    """'commit' (the Hugging Face cache's), 'content hash' (a plain directory's) or 'shape' (random weights)."""
    random_weights: bool = False
    device: str
    device_name: str
    dtype: str
    path: str
    """The decode path used (see decode_paths); `attempts` holds every path tried and why any was given up."""
    attempts: list[Attempt]
    load_s: float
    prompt: str
    prompt_tokens: list[tuple[int, str]]
    first_token_top: list[Candidate]
    step_tops: list[list[Candidate]] = []
    """The top-5 of each of the first --topk-steps generated tokens (step 1 comes from generate's own prefill)."""
    generated_tokens: int
    prefill_s: float
    decode_tps: float | None
    peak_memory_gib: float
    roofline: Roofline | None = None
    bandwidth: Bandwidth | None = None
    energy_j_per_token: float | None = None
    energy_source: str | None = None
    placement: dict[str, str]
    warnings: list[str] = []
    text: str

    def __str__(self) -> str:
        pinned = f"{self.revision[:12]} ({self.pinned_by})" + (", random weights" if self.random_weights else "")
        decode = f"{self.decode_tps:.1f} tok/s over {self.generated_tokens} tokens" if self.decode_tps else "n/a"
        rows = [
            ("model", f"{self.model} @ {pinned}"),
            ("device", f"{self.device_name} ({self.device}, {self.dtype})"),
            ("load", f"{self.load_s:.1f} s"),
            ("rendered prompt", repr(self.prompt)),
            ("prompt tokens", _tokens(self.prompt_tokens)),
            ("first token top-5", _tops(self.first_token_top)),
            *((f"step {i} top-5", _tops(t)) for i, t in enumerate(self.step_tops, 1)),
            ("prefill", f"{self.prefill_s * 1000:.0f} ms"),
            ("decode", decode),
            ("decode path", _attempts(self.path, self.attempts)),
            ("roofline", self._roofline()),
            ("energy", self._energy()),
            ("peak memory", f"{self.peak_memory_gib:.2f} GiB"),
            ("placement", ", ".join(sorted(set(self.placement.values())))),
            ("answer", self.text),
        ]
        lines = [f"{k:>18}  {v}" for k, v in rows] + [f"{'WARNING':>18}  {w}" for w in self.warnings]
        return "\n".join(lines)

    def _energy(self) -> str:
        if self.energy_j_per_token is None:
            return "n/a"
        return f"{self.energy_j_per_token:.2f} J/token ({self.energy_source})"

    def _roofline(self) -> str:
        if not self.roofline or not self.bandwidth:
            return "n/a"
        r = self.roofline
        return (
            f"{r.percent:.0f}% of {r.bandwidth_gbs:.0f} GB/s ({self.bandwidth.source}): {r.weight_gib:.2f} GiB of "
            f"weights + {r.kv_mib_per_step:.1f} MiB of KV cache read per token = {r.achieved_gbs:.0f} GB/s"
        )


def _tokens(tokens: list[tuple[int, str]], head: int = 24, tail: int = 8) -> str:
    """All of them in the JSON; here the first and last few of a long prompt."""
    shown = [f"{i}:{piece!r}" for i, piece in tokens]
    if len(shown) > head + tail:
        shown = [*shown[:head], f"… {len(shown) - head - tail} more …", *shown[-tail:]]
    return f"{len(tokens)}: " + " ".join(shown)


def _tops(top: list[Candidate]) -> str:
    return ", ".join(f"{c.token!r} {100 * c.probability:.3g}%" for c in top)


def _attempts(path: str, attempts: list[Attempt]) -> str:
    used = next(a for a in attempts if a.path == path)
    warm = f" (warm-up {used.warmup_s:.1f} s)" if used.warmup_s is not None else ""
    failed = "; ".join(f"{a.path} failed: {a.error}" for a in attempts if a.error)
    return path + warm + (f"; {failed}" if failed else "")


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


def _piece(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id]) or f"<{token_id}>"  # ids past a stand-in tokenizer's vocabulary


def _candidates(tokenizer: Any, pairs: list[tuple[int, float]]) -> list[Candidate]:
    return [Candidate(token=_piece(tokenizer, i), id=i, probability=p) for i, p in pairs]


def top_candidates(model: Any, tokenizer: Any, ids: Any, mask: Any, k: int = 5) -> tuple[list[Candidate], float]:
    """The first token's top-k from one forward pass over the prompt, and that pass's time: the prefill."""
    import torch

    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)  # warm-up: the first call of a shape pays for its setup
        _sync(model)
        start = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask).logits[0, -1].float()
        _sync(model)
        prefill_s = time.perf_counter() - start
    values, indices = torch.softmax(logits, dim=-1).topk(k)
    return _candidates(tokenizer, list(zip(indices.tolist(), values.tolist(), strict=True))), prefill_s


def _sync(model: Any) -> None:
    if model.device.type == "cuda":
        import torch

        torch.cuda.synchronize(model.device)


def _placement(model: Any, device: str) -> tuple[dict[str, str], list[str]]:
    placement = {k: str(v) for k, v in (getattr(model, "hf_device_map", None) or {"": device}).items()}
    offloaded = sorted(k or "model" for k, v in placement.items() if v in ("cpu", "disk"))
    warnings = []
    if offloaded and device.startswith("cuda"):
        shown = ", ".join(offloaded[:4])
        warnings.append(f"{len(offloaded)} module(s) on CPU or disk while a GPU is used ({shown}): expect ~1 tok/s")
    return placement, warnings


def bytes_per_step(model: Any) -> int:
    """Weight bytes one decode step reads: every parameter once, except that the input embedding gives only one
    row per token (unless it is tied to the output layer, which reads all of it)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # tied parameters are listed once
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() == emb.data_ptr():
        return total
    return total - emb.numel() * emb.element_size() + emb.shape[1] * emb.element_size()


def _roofline(model: Any, device: str, run: Generation, prompt_len: int) -> tuple[Roofline | None, Bandwidth | None]:
    if not run.decode_tps:
        return None, None
    bandwidth = device_bandwidth(device)
    kv = kv_bytes_per_token(model.config.to_dict(), kv_dtype_bytes=model.dtype.itemsize)
    context = prompt_len + len(run.tokens) / 2  # the mean context over the decode
    return roofline("probe", bytes_per_step(model), kv, context, run.decode_tps, bandwidth), bandwidth


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError(f"--device {device}: no CUDA GPU is visible to torch here")
    if device != "cpu" and not device.startswith("cuda"):
        raise ProbeError(f"--device {device!r}: auto, cpu or cuda")
    return device


def probe(
    model: str,
    prompt: str = "What is the capital of France?",
    *,
    revision: str | None = None,
    random_weights: bool = False,
    chat: bool = True,
    thinking: bool | None = None,
    max_new_tokens: int = 64,
    ignore_eos: bool = False,
    topk_steps: int = 0,
    device: str = "auto",
    dtype: str = "bfloat16",
    decode_path: str = "auto",
    store: ModelStore | None = None,
) -> ProbeResult:
    """Load `model` offline, generate greedily from `prompt` (exactly `max_new_tokens` with `ignore_eos`) on the
    fastest decode path that works (or `decode_path`), and measure (see ProbeResult)."""
    device = pick_device(device)
    try:
        paths = candidates(device, decode_path)
    except ValueError as err:
        raise ProbeError(str(err)) from err
    source = resolve(model, revision, store, random_weights)
    _reset_peak(device)
    loaded = load(source, device, dtype)
    tokenizer = loaded.tokenizer
    text = render(tokenizer, prompt, chat, thinking)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(device)
    top, prefill_s = top_candidates(loaded.model, tokenizer, enc.input_ids, enc.attention_mask)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    request = Request(enc.input_ids, enc.attention_mask, max_new_tokens, ignore_eos, pad, topk_steps, _eos(loaded))
    run, energy_name = _decode(loaded.model, request, paths, device)
    return _result(source, loaded, run, energy_name, device, dtype, text, request, top, prefill_s)


def _answer(tokenizer: Any, tokens: list[int], eos: tuple[int, ...]) -> str:
    """The answer up to its end-of-sequence token; with --ignore-eos what was decoded past it is only counted."""
    stop = next((i for i, t in enumerate(tokens) if t in eos), None)
    text = tokenizer.decode(tokens if stop is None else tokens[:stop], skip_special_tokens=True)
    if stop is None or stop == len(tokens) - 1:
        return text
    return f"{text}  [EOS at token {stop + 1}; {len(tokens) - stop - 1} more decoded past it for timing]"


def _eos(loaded: Any) -> tuple[int, ...]:
    eos = loaded.model.generation_config.eos_token_id
    eos = loaded.tokenizer.eos_token_id if eos is None else eos
    return tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))


def _decode(model: Any, request: Request, paths: tuple[str, ...], device: str) -> tuple[Generation, str | None]:
    from llm_ladder.measure.energy import open_energy_source

    energy = open_energy_source(gpu=device.startswith("cuda"))
    try:
        return decode(model, request, paths, energy), energy.name if energy else None
    except RuntimeError as err:
        raise ProbeError(str(err)) from err
    finally:
        if energy:
            energy.close()


def _result(source: Source, loaded: Any, run: Generation, energy: str | None, device: str, dtype: str,
            text: str, request: Request, top: list[Candidate], prefill_s: float) -> ProbeResult:  # fmt: skip
    tok, model, ids = loaded.tokenizer, loaded.model, request.input_ids[0].tolist()
    placement, warnings = _placement(model, device)
    roof, bandwidth = _roofline(model, device, run, len(ids))
    return ProbeResult(
        model=source.name,
        revision=source.revision,
        pinned_by=source.pinned_by,
        random_weights=source.random_weights,
        device=device,
        device_name=_device_name(device),
        dtype=dtype,
        path=run.path,
        attempts=run.attempts,
        load_s=loaded.load_s,
        prompt=text,
        prompt_tokens=[(i, _piece(tok, i)) for i in ids],
        first_token_top=top,
        step_tops=[_candidates(tok, t) for t in run.tops],
        generated_tokens=len(run.tokens),
        prefill_s=prefill_s,
        decode_tps=run.decode_tps,
        peak_memory_gib=_peak_memory(device),
        roofline=roof,
        bandwidth=bandwidth,
        energy_j_per_token=run.joules / len(run.tokens) if run.joules is not None and run.tokens else None,
        energy_source=f"{energy}, whole device" if energy and run.joules is not None else None,
        placement=placement,
        warnings=warnings,
        text=_answer(tok, run.tokens, request.eos_ids),
    )


def _device_name(device: str) -> str:
    import platform

    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.is_file() else []
    return f"{names[0]} × {len(names)}" if names else platform.machine()


def _reset_peak(device: str) -> None:
    """Start the peak over: CUDA's allocator statistics, or on a CPU Linux's high-water mark of this process's
    resident memory (`clear_refs` 5 resets VmHWM)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")


def _peak_memory(device: str) -> float:
    """The peak since `_reset_peak`: CUDA's max allocated, else VmHWM (the resident high-water mark; a sample of
    the current RSS after generation would miss what loading and prefill held)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / GIB
    with contextlib.suppress(OSError):
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        if found:
            return int(found.group(1)) * 1024 / GIB
    import resource  # POSIX only, and only where /proc is missing

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return peak * (1 if sys.platform == "darwin" else 1024) / GIB
