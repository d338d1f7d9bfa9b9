"""Streaming OpenAI client that times every request: TTFT, inter-token gaps, end-to-end.

Token counts come from the server's `usage` (stream_options.include_usage), not from counting chunks:
with speculative decoding one chunk can carry several tokens.

Timed streams go over aiohttp, not httpx (which the rest of the tool uses): measured on this 2-core machine with
64 streams against the mock, httpx + httpcore + anyio cost ~230 µs of client CPU per streamed chunk, aiohttp ~80
(~60 on uvloop). Under load that CPU is what delays reading a chunk and inflates the inter-token latencies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any

import aiohttp
from pydantic import BaseModel

from llm_ladder.measure.request import REQUEST_TIMEOUT, request_body
from llm_ladder.plan.schema import Workload


class RequestRecord(BaseModel):
    """One timed request. Times are seconds; `itl_s` are the gaps between content chunks."""

    workload: str
    trial: int
    ok: bool = True
    error: str | None = None
    error_kind: str | None = None
    """http_4xx, http_5xx, timeout, connect, read, malformed_sse, stream_error, truncated or no_content."""
    start_s: float | None = None
    """perf_counter() when the request was on the wire: places it on a load run's timeline. TTFT and e2e count
    from here, so they measure the server, not connection setup or the client's own queueing (`send_s`)."""
    send_s: float | None = None
    """From the call to the request fully written: connecting (or waiting for a pooled connection) and sending."""
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = []
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    text: str = ""
    output_perplexity: float | None = None
    """Perplexity of `text` under the serving model itself, when the plan scores outputs."""

    def fail(self, kind: str, error: str) -> None:
        if self.ok:  # the first failure is the cause; later ones are consequences
            self.ok, self.error_kind, self.error = False, kind, error

    @property
    def decode_tps(self) -> float | None:
        """Tokens after the first divided by the time after the first token."""
        n, e2e, ttft = self.completion_tokens, self.e2e_s, self.ttft_s
        if not self.ok or n is None or n < 2 or e2e is None or ttft is None or e2e <= ttft:
            return None
        return (n - 1) / (e2e - ttft)

    @property
    def e2e_tps(self) -> float | None:
        if not self.ok or not self.completion_tokens or not self.e2e_s:
            return None
        return self.completion_tokens / self.e2e_s


def chat_body(model: str, workload: Workload, seed: int, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """A streaming chat request for `workload`; `extras` are the engine's additions (Engine.request_extras),
    by default vLLM's `min_tokens`."""
    if extras is None:
        extras = {"min_tokens": workload.min_tokens} if workload.min_tokens else {}
    return request_body(model, workload.prompt, workload.max_tokens, stream=True, extras=extras,
                        temperature=workload.temperature, top_p=workload.top_p, seed=seed)  # fmt: skip


def _sse_payloads(line: str) -> dict[str, Any] | None:
    """Decode one SSE line; None for keep-alives, comments, and the [DONE] sentinel. Raises ValueError for a
    data line that is not JSON."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    return json.loads(data)


def _chunk_text(choice: dict[str, Any]) -> str | None:
    """Generated text in a chat delta (content or reasoning) or a completions choice."""
    delta = choice.get("delta")
    if delta is not None:
        return delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
    return choice.get("text")


class _Timer:
    """Accumulates chunk arrival times, in plain attributes (a pydantic field assignment per chunk costs more than
    the read), and fills the RequestRecord at the end."""

    def __init__(self, record: RequestRecord) -> None:
        self.called = self.start = time.perf_counter()
        self.record, self.last = record, None
        record.start_s = self.start
        self.parts: list[str] = []
        self.itl: list[float] = []
        self.ttft: float | None = None
        self.finish_reason: str | None = None
        self.done = False

    def sent(self) -> None:
        """The request body is being written: the clock starts (aiohttp's chunk-sent trace, just before the
        socket write)."""
        self.start = self.record.start_s = time.perf_counter()
        self.record.send_s = self.start - self.called

    def on_line(self, line: str, now: float) -> None:
        if line.strip() == "data: [DONE]":
            self.done = True
            return
        try:
            chunk = _sse_payloads(line)
        except ValueError:
            self.record.fail("malformed_sse", f"malformed SSE line: {line[:120]!r}")
            return
        if chunk is not None:
            self.on_chunk(chunk, now)

    def on_chunk(self, chunk: dict[str, Any], now: float) -> None:
        if error := chunk.get("error"):  # vLLM reports mid-stream failures as an error event
            self.record.fail("stream_error", str(error.get("message", error) if isinstance(error, dict) else error))
        if usage := chunk.get("usage"):
            self.record.prompt_tokens = usage.get("prompt_tokens")
            self.record.completion_tokens = usage.get("completion_tokens")
        for choice in chunk.get("choices") or ():
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            content = _chunk_text(choice)
            if not content:
                continue
            if self.last is None:
                self.ttft = now - self.start
            else:
                self.itl.append(now - self.last)
            self.last = now
            self.parts.append(content)

    def finish(self) -> RequestRecord:
        record = self.record
        record.e2e_s = time.perf_counter() - self.start
        record.ttft_s, record.itl_s, record.finish_reason = self.ttft, self.itl, self.finish_reason
        record.text = "".join(self.parts)
        if record.ttft_s is None:
            record.fail("no_content", "no content in stream")
        elif not self.done or record.completion_tokens is None:
            missing = "[DONE]" if not self.done else "usage"
            record.fail("truncated", f"stream ended without {missing}")
        return record


class _ReadClock(asyncio.Protocol):
    """Sits between a connection's transport and aiohttp's protocol and notes when the last read arrived. The loop
    calls data_received the moment it reads the socket; the coroutine reading the response resumes only after the
    other callbacks of that loop iteration, which with 64 streams in flight is milliseconds later."""

    def __init__(self, inner: asyncio.BaseProtocol) -> None:
        self.inner = inner
        self.last_read = time.perf_counter()

    def data_received(self, data: bytes) -> None:
        self.last_read = time.perf_counter()
        self.inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _read_clock(resp: aiohttp.ClientResponse) -> _ReadClock | None:
    """The response connection's read clock, put in place on first use (a kept-alive connection keeps its own)."""
    transport = resp.connection.transport if resp.connection is not None else None
    if transport is None:
        return None
    protocol = transport.get_protocol()
    if not isinstance(protocol, _ReadClock):
        protocol = _ReadClock(protocol)
        transport.set_protocol(protocol)
    return protocol


async def _read_lines(resp: aiohttp.ClientResponse, timer: _Timer) -> None:
    """Lines of the event stream, each stamped with the arrival time of the socket read that completed it (without
    a read clock, of the read that brought it to this coroutine): lines that came in one read arrived together,
    however long parsing the first takes."""
    clock = _read_clock(resp)
    pending = b""
    async for data in resp.content.iter_any():
        now = clock.last_read if clock is not None else time.perf_counter()
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            timer.on_line(line.decode("utf-8", errors="replace"), now)
    if pending.strip():
        timer.on_line(pending.decode("utf-8", errors="replace"), time.perf_counter())


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    return "read"


async def _on_body_sent(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    ctx.trace_request_ctx.sent()


class Streamer:
    """An aiohttp session for timed streaming requests; use as `async with Streamer(...) as streamer`.
    No connection limit: a load level's concurrency is set by the load generator, not by a pool."""

    def __init__(
        self,
        headers: dict[str, str] | None = None,
        connect_timeout_s: float = REQUEST_TIMEOUT.connect or 10.0,
        read_timeout_s: float = REQUEST_TIMEOUT.read or 600.0,
    ) -> None:
        self.headers = headers or {}
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Streamer:
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(_on_body_sent)
        connector = aiohttp.TCPConnector(limit=0)
        self.session = aiohttp.ClientSession(
            headers=self.headers, timeout=self.timeout, connector=connector, trace_configs=[trace]
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def stream(
        self, url: str, body: dict[str, Any], record: RequestRecord, retry_stale: bool = True
    ) -> RequestRecord:
        """POST a streaming request and time it; every failure becomes a failed record, never an exception.

        A pooled keep-alive connection the server has already closed fails before any answer arrives
        ("Can not write request body", seen with llama-server): that request is sent again, once, on a fresh
        connection (urllib3 retries these too), and the clock restarts with it."""
        assert self.session is not None, "use Streamer as an async context manager"
        timer = _Timer(record)
        answered = False
        try:
            async with self.session.post(url, json=body, trace_request_ctx=timer) as resp:
                answered = True  # the server has the request: never send it again
                if resp.status != 200:
                    text = (await resp.read()).decode(errors="replace")[:300]
                    record.fail(f"http_{resp.status // 100}xx", f"HTTP {resp.status}: {text}")
                    return timer.finish()
                await _read_lines(resp, timer)
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
            stale = not answered and not isinstance(exc, aiohttp.ClientConnectorError)  # refused: not stale
            if retry_stale and stale:
                return await self.stream(url, body, record, retry_stale=False)
            record.fail(_error_kind(exc), f"{type(exc).__name__}: {exc}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            record.fail(_error_kind(exc), f"{type(exc).__name__}: {exc}")
        return timer.finish()


async def stream_chat(
    streamer: Streamer,
    base_url: str,
    model: str,
    workload: Workload,
    trial: int,
    seed: int,
    extras: dict[str, Any] | None = None,
) -> RequestRecord:
    """Send one streaming chat request for a workload; failures become a record with ok=False."""
    record = RequestRecord(workload=workload.name, trial=trial)
    body = chat_body(model, workload, seed, extras)
    return await streamer.stream(f"{base_url}/v1/chat/completions", body, record)


def run_fast(main: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run on uvloop where it is installed (a faster event loop: less client CPU per chunk)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
