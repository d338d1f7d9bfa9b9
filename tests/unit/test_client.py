import asyncio

import pytest

from llm_ladder.engines.process import free_port
from llm_ladder.measure.client import Streamer, _sse_payloads, stream_chat
from llm_ladder.plan.schema import Workload
from llm_ladder.testing.mock_server import MockServer, Script

W = Workload(name="w", prompt="hi", max_tokens=20, min_tokens=5, temperature=0.0)


def _run(url, workload=W):
    async def go():
        async with Streamer(read_timeout_s=10) as streamer:
            return await stream_chat(streamer, url, "mock", workload, trial=0, seed=7)

    return asyncio.run(go())


def test_timings_match_the_scripted_server():
    with MockServer(Script(ttft_ms=80, itl_ms=20, tokens=20)) as srv:
        rec = _run(srv.url)
        body = srv.state.requests[0]
    assert rec.ok and rec.completion_tokens == 20 and rec.prompt_tokens == 10
    assert 0.075 < rec.ttft_s < 0.2
    assert 0 < rec.send_s < 0.5  # connecting and sending, counted apart from TTFT
    assert len(rec.itl_s) == 19 and all(0.015 < gap < 0.1 for gap in rec.itl_s)
    assert rec.decode_tps == pytest.approx(50, rel=0.3)
    assert rec.text.startswith("word0 word1")
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["seed"] == 7 and body["min_tokens"] == 5 and body["max_tokens"] == 20


def test_http_errors_become_failed_records():
    with MockServer(Script(fail_status=503)) as srv:
        rec = _run(srv.url)
    assert not rec.ok and rec.error.startswith("HTTP 503") and rec.error_kind == "http_5xx"


def test_a_stale_pooled_connection_is_retried_once_on_a_fresh_one():
    """The server answers a request, then drops the kept-alive connection unannounced (as llama-server did):
    the next request on it is sent again on a new connection instead of failing; a live stream is never resent."""
    import socket
    import threading

    events = (
        b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\ndata: [DONE]\n\n'
    )
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (
        len(events), events)  # fmt: skip
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        first, _ = listener.accept()
        accepted.append(first)
        first.recv(65536)
        first.sendall(answer)
        first.recv(65536)  # the second request arrives on the kept-alive connection...
        first.close()  # ...which the server drops without an answer
        second, _ = listener.accept()
        accepted.append(second)
        second.recv(65536)
        second.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def two_requests():
        async with Streamer(read_timeout_s=5) as streamer:
            first = await stream_chat(streamer, url, "m", W, trial=0, seed=0)
            return first, await stream_chat(streamer, url, "m", W, trial=1, seed=1)

    first, second = asyncio.run(two_requests())
    listener.close()
    assert first.ok and second.ok and second.text == "hi"
    assert len(accepted) == 2


def test_connection_refused_becomes_a_failed_record():
    rec = _run(f"http://127.0.0.1:{free_port()}")
    assert not rec.ok and rec.error_kind == "connect"


def test_sse_parsing_skips_comments_and_done():
    assert _sse_payloads(": keep-alive") is None
    assert _sse_payloads("data: [DONE]") is None
    assert _sse_payloads('data: {"a": 1}') == {"a": 1}


def test_every_request_is_built_in_one_place_with_the_engines_fields_added():
    from llm_ladder.engines.llamacpp import LlamaCppEngine
    from llm_ladder.measure.client import chat_body
    from llm_ladder.measure.request import request_body

    long = Workload(name="long", prompt="p", max_tokens=64, min_tokens=64, temperature=0.7, top_p=0.9)
    vllm = chat_body("m", long, seed=3)
    assert vllm == {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "p"}],
                    "temperature": 0.7, "top_p": 0.9, "seed": 3, "stream": True,
                    "stream_options": {"include_usage": True}, "min_tokens": 64}  # fmt: skip
    llama = chat_body("m", long, seed=3, extras=LlamaCppEngine().request_extras(long))
    assert "min_tokens" not in llama and llama["ignore_eos"] is True and llama["cache_prompt"] is False
    completion = request_body("m", [1, 2], 1, endpoint="completions", extras={"prompt_logprobs": 5}, temperature=0)
    assert completion == {"model": "m", "max_tokens": 1, "prompt": [1, 2], "temperature": 0, "prompt_logprobs": 5}
