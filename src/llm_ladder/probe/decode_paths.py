"""How `ladder probe` decodes, greedy, on one of three paths, tried fastest first and given up on by itself when
it fails here:

- compiled: our own decode loop over a transformers StaticCache, its step (forward + argmax) compiled with
  torch.compile into a CUDA graph (mode="reduce-overhead", fullgraph, inductor's coordinate-descent tuning of
  the memory-bound matrix-vector kernels), the CPU never waiting for the GPU between steps.
- static: transformers' `generate` with its static KV cache, not compiled.
- dynamic: transformers' `generate` with its default cache, grown per token; the only path on CPU unless asked.

Why a loop of our own instead of `generate` for the fast path (measured on an H100 80GB HBM3, Llama-3.1-8B-shaped,
bf16, batch 1, 256 tokens; bench/probe_gpu.py): once a step is one CUDA graph, generate's own per-step Python work
(logits processors, stopping criteria, input bookkeeping) is what the GPU waits for — generate with transformers'
auto-compile reached 118.7 tok/s, 112.6 with max-autotune; this loop 138 tok/s, 156.5 with coordinate-descent
tuning (70% of the 3.35 TB/s datasheet bandwidth). Any host-to-device copy per step (a position made with
torch.tensor) synchronizes and costs ~10%: positions are sliced from one tensor made up front. gpt-fast decodes the
same way. Compiling `model.forward` by hand for generate crashes inside generate (the workshop's finding).

Each path's first call pays its one-off cost (compile and CUDA-graph capture: ~40 s for an 8B model, less when
inductor's cache is warm); it runs once as a warm-up before the timed call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

PATHS = ("compiled", "static", "dynamic")


class Attempt(BaseModel):
    """One path tried: its decode speed, or why it was given up."""

    path: str
    decode_tps: float | None = None
    warmup_s: float | None = None
    error: str | None = None


@dataclass
class Request:
    input_ids: Any
    attention_mask: Any
    max_new_tokens: int
    ignore_eos: bool
    pad_token_id: int | None
    topk_steps: int = 0
    eos_ids: tuple[int, ...] = ()


@dataclass
class StepRecorder:
    """A logits processor that notes when each step's logits were ready (CUDA events on a GPU, so the stream's
    own timeline is measured and nothing is synchronized per step) and the top-5 of the first `topk_steps`."""

    cuda: bool
    topk_steps: int = 0
    marks: list[Any] = field(default_factory=list)
    tops: list[Any] = field(default_factory=list)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
        if len(self.tops) < self.topk_steps:
            self.tops.append(torch.softmax(scores[0].float(), dim=-1).topk(5))
        return scores

    def seconds(self) -> list[float]:
        """Each step's time since the first step's logits."""
        if not self.marks:
            return []
        if self.cuda:
            self.marks[-1].synchronize()
            return [self.marks[0].elapsed_time(m) / 1000 for m in self.marks]
        return [m - self.marks[0] for m in self.marks]


@dataclass
class Generation:
    path: str
    tokens: list[int]
    step_s: list[float]
    tops: list[list[tuple[int, float]]]
    joules: float | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def decode_tps(self) -> float | None:
        """Steps after the first (which comes out of the prefill) over the time they took."""
        return (len(self.step_s) - 1) / self.step_s[-1] if len(self.step_s) > 1 and self.step_s[-1] > 0 else None


def _options(path: str) -> dict[str, Any]:
    return {"cache_implementation": "static"} if path == "static" else {}


def generate(model: Any, request: Request, path: str, energy: Any = None) -> Generation:
    """One timed greedy `generate` on `path` (energy from `energy.joules()` around it, when given)."""
    import torch
    from transformers import LogitsProcessorList

    recorder = StepRecorder(cuda=model.device.type == "cuda", topk_steps=request.topk_steps)
    before = energy.joules() if energy else None
    with torch.inference_mode():
        out = model.generate(
            input_ids=request.input_ids,
            attention_mask=request.attention_mask,  # always explicit: pad == eos would otherwise be guessed
            max_new_tokens=request.max_new_tokens,
            **({"eos_token_id": []} if request.ignore_eos else {}),  # decode past EOS, as vLLM's ignore_eos
            do_sample=False,
            logits_processor=LogitsProcessorList([recorder]),
            pad_token_id=request.pad_token_id,
            disable_compile=True,
            **_options(path),
        )
    return _finish(path, out[0, request.input_ids.shape[1] :].tolist(), recorder, energy, before)


def _finish(path: str, tokens: list[int], recorder: StepRecorder, energy: Any, before: float | None) -> Generation:
    step_s = recorder.seconds()  # synchronizes: the energy read next covers the whole decode
    joules = energy.joules() - before if energy and before is not None else None
    tops = [list(zip(t.indices.tolist(), t.values.tolist(), strict=True)) for t in recorder.tops]
    return Generation(path, tokens, step_s, tops, joules)


def decode_step(model: Any) -> Callable[..., tuple[Any, Any]]:
    """One decode step over a static cache: next token (greedy) and the logits it came from."""

    def step(token: Any, position: Any, cache: Any, mask: Any) -> tuple[Any, Any]:
        logits = model(
            input_ids=token,
            attention_mask=mask,  # explicit, the cache's full length: the causal mask hides what is not written
            past_key_values=cache,
            cache_position=position,
            position_ids=position.unsqueeze(0),
            use_cache=True,
        ).logits[:, -1]
        return logits.argmax(-1, keepdim=True), logits

    return step


EOS_CHECK_EVERY = 8
"""Steps between looks for an end-of-sequence token: each look waits for the GPU, so not every step."""


def greedy_loop(model: Any, request: Request, step: Callable[..., tuple[Any, Any]], energy: Any = None,
                graphs: bool = False) -> Generation:  # fmt: skip
    """Greedy decoding with `step` (compiled or not) over a StaticCache; the prefill is an uncompiled forward.
    Stops after the first EOS unless `ignore_eos` (then it decodes past it, as vLLM's ignore_eos does)."""
    import torch
    from transformers import StaticCache

    ids, n, device = request.input_ids, request.max_new_tokens, request.input_ids.device
    prompt = ids.shape[1]
    cache = StaticCache(config=model.config, max_cache_len=prompt + n)
    mask = torch.cat([request.attention_mask, request.attention_mask.new_ones(1, n)], dim=1)
    positions = torch.arange(prompt, prompt + n, device=device)  # made once: a copy per step would synchronize
    eos = torch.tensor(request.eos_ids or [-1], device=device)
    recorder = StepRecorder(cuda=device.type == "cuda", topk_steps=request.topk_steps)
    before = energy.joules() if energy else None
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask[:, :prompt], past_key_values=cache,
                    cache_position=torch.arange(prompt, device=device), use_cache=True)  # fmt: skip
        logits = out.logits[:, -1]
        tokens = [logits.argmax(-1, keepdim=True)]
        recorder(None, logits)
        for i in range(n - 1):
            if not request.ignore_eos and i % EOS_CHECK_EVERY == 0 and _ended(tokens, eos):
                break
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are copied below
            token, logits = step(tokens[-1], positions[i : i + 1], cache, mask)
            tokens.append(token.clone())
            recorder(None, logits)  # reads the logits before the next replay overwrites them
    generated = torch.cat(tokens, dim=1)[0].tolist()
    if not request.ignore_eos:
        stop = next((k for k, t in enumerate(generated) if t in request.eos_ids), None)
        generated = generated if stop is None else generated[: stop + 1]
    return _finish("compiled" if graphs else "loop", generated, recorder, energy, before)


def _ended(tokens: list[Any], eos: Any) -> bool:
    import torch

    return bool(torch.isin(torch.cat(tokens[-EOS_CHECK_EVERY:], dim=1), eos).any())  # waits for the GPU


def _compiled_step(model: Any) -> Callable[..., tuple[Any, Any]]:
    import torch

    compiled = getattr(model, "_ladder_compiled_step", None)
    if compiled is None:
        compiled = torch.compile(decode_step(model), mode="reduce-overhead", fullgraph=True)
        model._ladder_compiled_step = compiled  # one compile per model, reused by the timed call
    return compiled


def _run(model: Any, request: Request, path: str, energy: Any = None) -> Generation:
    if path == "compiled":
        return greedy_loop(model, request, _compiled_step(model), energy, graphs=True)
    return generate(model, request, path, energy)


def _warm_up(model: Any, request: Request, path: str) -> float:
    """Compile and capture CUDA graphs with the very call that is timed next (another length would recompile);
    uncompiled paths only need their first call's one-off setup out of the way."""
    start = time.perf_counter()
    _run(model, request if path == "compiled" else replace(request, max_new_tokens=2, topk_steps=0), path)
    return time.perf_counter() - start


def candidates(device: str, wanted: str) -> tuple[str, ...]:
    """Paths to try, in order: the one asked for, or on a GPU fastest first and on CPU the dynamic cache."""
    if wanted != "auto":
        if wanted not in PATHS:
            raise ValueError(f"decode path {wanted!r}: auto, {', '.join(PATHS)}")
        if wanted == "compiled" and not device.startswith("cuda"):
            raise ValueError("the compiled decode path needs a CUDA GPU (its step is a CUDA graph)")
        return (wanted,)
    return PATHS if device.startswith("cuda") else ("dynamic",)


def decode(model: Any, request: Request, paths: tuple[str, ...], energy: Any = None) -> Generation:
    """The first of `paths` that works, with every attempt (and why the others were given up) recorded."""
    attempts = []
    for path in paths:
        try:
            with _tuning(path):
                warmup_s = _warm_up(model, request, path)
                result = _run(model, request, path, energy)
        except Exception as err:  # compile, capture or kernel failure: this path does not work here, try the next
            attempts.append(Attempt(path=path, error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"))
            _reset()
            continue
        attempts.append(Attempt(path=path, decode_tps=result.decode_tps, warmup_s=warmup_s))
        result.attempts = attempts
        return result
    raise RuntimeError("no decode path worked here: " + "; ".join(f"{a.path}: {a.error}" for a in attempts))


def _tuning(path: str) -> contextlib.AbstractContextManager[Any]:
    """Inductor's coordinate-descent tuning of the compiled step's kernels: +13% tok/s on the 8B shape, at ~30 s
    more compile the first time (inductor caches the result on disk)."""
    if path != "compiled":
        return contextlib.nullcontext()
    import torch._inductor.config

    return torch._inductor.config.patch(coordinate_descent_tuning=True)


def _reset() -> None:
    import torch

    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
