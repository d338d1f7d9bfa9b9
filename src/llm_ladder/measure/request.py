"""The one builder of the OpenAI-compatible requests the tool sends (workloads, suites, load, smoke, prompt
logprobs), and the one HTTP timeout. Engine-specific fields are never written here: they come in as `extras`,
from `Engine.request_extras` or a capability the caller checked (vLLM's `min_tokens`, `return_token_ids`,
`prompt_logprobs`; llama.cpp's `cache_prompt`, `ignore_eos`)."""

from __future__ import annotations

from typing import Any, Literal

import httpx

REQUEST_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=None)
"""Generous reads (a long answer on a slow CPU rung), quick connects; no pool wait: a suite run queues its own."""

Endpoint = Literal["chat", "completions"]


def request_body(
    model: str,
    prompt: str | list[int] | list[str] | list[list[int]],
    max_tokens: int,
    *,
    endpoint: Endpoint = "chat",
    stream: bool = False,
    extras: dict[str, Any] | None = None,
    **sampling: Any,
) -> dict[str, Any]:
    """A chat (one user message) or completions request; `sampling` holds temperature / top_p / seed where the
    caller sets them (None values are left out), `extras` the engine's own fields."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    body |= {k: v for k, v in sampling.items() if v is not None}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body | (extras or {})


def url(base_url: str, endpoint: Endpoint) -> str:
    return f"{base_url}/v1/{'chat/completions' if endpoint == 'chat' else 'completions'}"
