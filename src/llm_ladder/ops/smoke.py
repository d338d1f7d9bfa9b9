"""`ladder smoke`: is this OpenAI-compatible endpoint usable? The workshop's first checks, one line each: health,
the model list, a chat answer plain and streamed, a text completion."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from llm_ladder.measure.client import RequestRecord, Streamer, chat_body
from llm_ladder.measure.request import request_body
from llm_ladder.plan.schema import Workload
from llm_ladder.quality.evaluation import auth_headers, served_model

PROMPT = "Say hello in one short sentence."
MAX_TOKENS = 32


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    ms: float


def _excerpt(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text[:n] + ("…" if len(text) > n else ""))


class Smoke:
    def __init__(self, http: httpx.AsyncClient, streamer: Streamer, base_url: str, model: str | None) -> None:
        self.http, self.streamer, self.base_url, self.model = http, streamer, base_url, model

    async def health(self) -> str:
        resp = await self.http.get(f"{self.base_url}/health")
        resp.raise_for_status()
        return f"HTTP {resp.status_code}"

    async def models(self) -> str:
        self.model = await served_model(self.http, self.base_url, self.model)
        return f"serves {self.model!r}"

    async def chat(self) -> str:
        body = request_body(self.model or "", PROMPT, MAX_TOKENS)
        resp = await self.http.post(f"{self.base_url}/v1/chat/completions", json=body)
        resp.raise_for_status()
        text = resp.json()["choices"][0]["message"]["content"] or ""
        if not text.strip():
            raise ValueError("the answer is empty")
        return _excerpt(text)

    async def chat_stream(self) -> str:
        workload = Workload(name="smoke", prompt=PROMPT, max_tokens=MAX_TOKENS)
        body = chat_body(self.model or "", workload, seed=0)
        record = await self.streamer.stream(
            f"{self.base_url}/v1/chat/completions", body, RequestRecord(workload="smoke", trial=0)
        )
        if not record.ok:
            raise ValueError(record.error)
        return f"{record.completion_tokens} tokens, first after {record.ttft_s * 1000:.0f} ms: {_excerpt(record.text)}"

    async def completion(self) -> str:
        body = request_body(self.model or "", "The capital of France is", 8, endpoint="completions", temperature=0)
        resp = await self.http.post(f"{self.base_url}/v1/completions", json=body)
        resp.raise_for_status()
        text = resp.json()["choices"][0]["text"]
        if not text.strip():
            raise ValueError("the completion is empty")
        return _excerpt(text)

    def steps(self) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
        return [
            ("GET /health", self.health),
            ("GET /v1/models", self.models),
            ("POST /v1/chat/completions", self.chat),
            ("POST /v1/chat/completions (stream)", self.chat_stream),
            ("POST /v1/completions", self.completion),
        ]


async def _timed(name: str, step: Callable[[], Awaitable[str]]) -> Check:
    start = time.perf_counter()
    try:
        detail, ok = await step(), True
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as err:
        detail, ok = f"{type(err).__name__}: {err}", False
    return Check(name, ok, detail, (time.perf_counter() - start) * 1000)


async def smoke(
    base_url: str, model: str | None, api_key: str | None, on_check: Callable[[Check], None], timeout_s: float = 120
) -> list[Check]:
    """Every check in turn (a failed one does not stop the rest); each is reported as it finishes."""
    headers = auth_headers(api_key)
    async with (
        httpx.AsyncClient(timeout=timeout_s, headers=headers) as http,
        Streamer(headers, read_timeout_s=timeout_s) as streamer,
    ):
        runner = Smoke(http, streamer, base_url.rstrip("/"), model)
        checks = []
        for name, step in runner.steps():
            checks.append(check := await _timed(name, step))
            on_check(check)
        return checks
