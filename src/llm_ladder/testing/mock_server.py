"""A scripted OpenAI-compatible streaming server for tests and benchmarks (not vLLM).

It streams `tokens` words with a known TTFT and inter-token gap, exposes spec-decode counters on /metrics,
and can print vLLM-style startup lines, so the engine adapter can be exercised without a model:
`python -m llm_ladder.testing.mock_server --port P [--ttft-ms 20 --itl-ms 5 --tokens 32] [vLLM flags are ignored]`.
The stdlib server is enough here: one thread per connection, loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llm_ladder.testing import mock_replies as replies


@dataclass
class Script:
    ttft_ms: float = 20.0
    itl_ms: float = 5.0
    tokens: int = 32
    text: str = "word"
    fail_status: int | None = None
    startup_delay_s: float = 0.0
    die_after: int | None = None
    """Exit the whole process (a crash) after serving this many chat requests."""
    logprob_shift: float = 0.0
    """Moves prompt-logprob mass away from the actual token: 0 behaves like a baseline, ~2 flips the top token."""
    spec_drafts_per_token: int = 0
    """When > 0, /metrics counts this many draft tokens (half accepted) per generated token."""
    reply: str | None = None
    """The answer to non-streaming chat requests (default: `tokens` words)."""
    replies: dict[str, str] = field(default_factory=dict)
    """Answers by prompt: the first key found in the user message picks its reply."""
    api_key: str | None = None
    """When set, /v1/* requests need `Authorization: Bearer <api_key>` (as `vllm serve --api-key`)."""
    reply_prefix: str = ""
    """Prepended to every non-streaming answer (a lossy speculation, when only the speculative rung has it)."""
    metrics_prefix: str = "vllm:"
    """Prefix of the spec-decode counters in /metrics (`llamacpp:` for a fake llama-server)."""
    jitter_ms: float = 0.0
    """Each delay is drawn uniformly from [d - jitter, d + jitter] (never below 0)."""
    error_rate: float = 0.0
    """Shares of streaming requests that fail: HTTP 500, a stream cut off halfway (no [DONE]), one malformed SSE
    line, or a connection reset halfway. Drawn from a generator seeded with `seed`."""
    truncate_rate: float = 0.0
    malformed_rate: float = 0.0
    reset_rate: float = 0.0
    seed: int = 0


class _State:
    def __init__(self, script: Script) -> None:
        self.script, self.lock = script, threading.Lock()
        self.drafts = self.draft_tokens = self.accepted = 0
        self.requests: list[dict] = []
        self.in_flight = self.peak_in_flight = 0
        """Non-streaming requests being answered now, and the most at once (batching checks)."""
        self.rng = random.Random(script.seed)
        self.timelines: list[list[float]] = []
        """Per streamed request: perf_counter() when it arrived, then when each content chunk was written — the
        true delays a client's measurements are checked against (same host, same monotonic clock)."""

    def fault(self) -> str | None:
        s = self.script
        with self.lock:
            x = self.rng.random()
        rates = {"error": s.error_rate, "truncate": s.truncate_rate, "malformed": s.malformed_rate}
        for kind, rate in (rates | {"reset": s.reset_rate}).items():
            if x < rate:
                return kind
            x -= rate
        return None

    def delay(self, ms: float) -> None:
        jitter = self.script.jitter_ms
        if jitter:
            with self.lock:
                ms = max(0.0, ms + self.rng.uniform(-jitter, jitter))
        time.sleep(ms / 1000)


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as uvicorn: every chunk leaves when written

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def handle_one_request(self) -> None:
            self.arrived = _kernel_arrival(self.connection)
            super().handle_one_request()

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _unauthorized(self) -> bool:
            key = state.script.api_key
            if key and self.path.startswith("/v1/") and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, json.dumps({"error": "Unauthorized"}).encode())
                return True
            return False

        def do_GET(self) -> None:
            if self._unauthorized():
                return
            if self.path == "/health":
                self._send(200, b"")
            elif self.path == "/metrics":
                self._send(200, _metrics(state).encode(), "text/plain")
            elif self.path == "/mock/timelines":  # the true delays so far, then forgotten (fidelity benchmark)
                with state.lock:
                    timelines, state.timelines = state.timelines, []
                self._send(200, json.dumps(timelines).encode())
            elif self.path == "/v1/models":
                self._send(200, json.dumps({"data": [{"id": "mock", "object": "model"}]}).encode())
            else:
                self._send(404, b"{}")

        def do_POST(self) -> None:
            received = self.arrived or time.perf_counter()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self._unauthorized():
                return
            if self.path == "/v1/completions" and body.get("prompt_logprobs"):
                self._send(200, json.dumps(replies.completion_with_logprobs(body, state.script)).encode())
                return
            with state.lock:
                state.requests.append(body)
            script = state.script
            if script.fail_status:
                self._send(script.fail_status, json.dumps({"error": {"message": "scripted failure"}}).encode())
                return
            n = min(body.get("max_tokens") or script.tokens, script.tokens)
            if body.get("ignore_eos") and body.get("max_tokens"):
                n = body["max_tokens"]
            fault = state.fault() if body.get("stream") else None
            if fault == "error":
                self._send(500, json.dumps({"error": {"message": "scripted server error"}}).encode())
            elif not body.get("stream"):
                self._reply(body, script, n)
            else:
                self._stream(n, body, received, fault)
            if script.die_after is not None and len(state.requests) >= script.die_after:
                print("ERROR scripted crash", flush=True)
                os._exit(9)

        def _reply(self, body: dict, script: Script, n: int) -> None:
            """A whole answer after the first-token delay (requests in flight counted)."""
            with state.lock:
                state.in_flight += 1
                state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            time.sleep(script.ttft_ms / 1000)
            with state.lock:
                state.in_flight -= 1
            reply = replies.text_reply if self.path == "/v1/completions" else replies.chat_reply
            self._send(200, json.dumps(reply(body, script, n)).encode())

        def _stream(self, n: int, body: dict, received: float, fault: str | None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")  # as uvicorn streams vLLM's answers
            self.send_header("Connection", "close")
            self.end_headers()
            completions = self.path == "/v1/completions"
            out = _Chunked(self.wfile)
            if _stream(out, state, n, body.get("model", "mock"), completions, [received], fault) == "reset":
                # SO_LINGER 0: close() sends RST, as a crashed or overloaded server's connection would
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # now: the server's own shutdown would send a FIN first
            else:  # a complete HTTP body, whether or not the stream in it is (a truncated stream ends cleanly)
                out.end()
            self.close_connection = True

    return Handler


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python does not always name it


def _kernel_arrival(sock: socket.socket) -> float | None:
    """When the kernel received the next request's first bytes, on the perf_counter() clock; None where there is
    no such stamp (not Linux, or the peer closed). Peeked, so the request stays unread. A request's true start:
    stamped in the handler instead, it would carry this threaded server's own accept and GIL delays, which a
    client rightly counts and the truth would not."""
    try:
        _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    except OSError:
        return None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = struct.unpack("qq", payload[:16])
            return sec + nsec / 1e9 - (time.time() - time.perf_counter())
    return None


class _Chunked:
    """HTTP/1.1 chunked transfer encoding over the handler's wfile: each write is one chunk."""

    def __init__(self, wfile) -> None:
        self.wfile = wfile

    def write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def flush(self) -> None:
        self.wfile.flush()

    def end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _stream(
    wfile, state: _State, n: int, model: str, completions: bool, timeline: list[float], fault: str | None
) -> str | None:
    """Write the scripted stream; returns the fault that ended it early, if any."""
    script = state.script
    with state.lock:
        state.timelines.append(timeline)
    state.delay(script.ttft_ms)
    for i in range(n):
        if i:
            state.delay(script.itl_ms)
        if i == n // 2 and fault in ("truncate", "reset"):
            return fault
        if i == n // 2 and fault == "malformed":
            wfile.write(b"data: {this is not json\n\n")
        data = replies.chunk(model, f"{script.text}{i} ", completions=completions)
        sent = time.perf_counter()  # right before the write: after it, this thread may wait for the GIL
        wfile.write(data)
        wfile.flush()
        timeline.append(sent)
    wfile.write(replies.chunk(model, None, finish="length", completions=completions))
    wfile.write(replies.chunk(model, None, usage={"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}))
    wfile.write(b"data: [DONE]\n\n")
    wfile.flush()
    if script.spec_drafts_per_token:
        with state.lock:
            state.drafts += n
            state.draft_tokens += n * script.spec_drafts_per_token
            state.accepted += n * script.spec_drafts_per_token // 2
    return None


def _metrics(state: _State) -> str:
    prefix = state.script.metrics_prefix
    lines = []
    for name, value in (
        ("num_drafts", state.drafts),
        ("num_draft_tokens", state.draft_tokens),
        ("num_accepted_tokens", state.accepted),
    ):
        lines += [
            f"# TYPE {prefix}spec_decode_{name} counter",
            f'{prefix}spec_decode_{name}_total{{engine="0"}} {value}',
        ]
    return "\n".join(lines) + "\n"


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    """The listen backlog (the stdlib default is 5): with hundreds of streams opening at once a short backlog
    drops connection attempts, and the client's SYN retry adds a whole second to their TTFT."""
    daemon_threads = True

    def server_bind(self) -> None:
        with contextlib.suppress(OSError):  # inherited by accepted connections; Linux only
            self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        super().server_bind()


class MockServer:
    """In-process server on a free loopback port; use as a context manager in tests."""

    def __init__(self, script: Script | None = None, port: int = 0) -> None:
        self.state = _State(script or Script())
        self.httpd = _Server(("127.0.0.1", port), _handler(self.state))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> MockServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _hold_gpu_memory(gib: float) -> object:
    """Allocate and touch `gib` GiB on the first CUDA device, as an engine's weights and KV cache would."""
    import torch

    buf = torch.empty(int(gib * 1024**3), dtype=torch.uint8, device="cuda")
    buf.fill_(1)
    torch.cuda.synchronize()
    return buf


def main(argv: list[str] | None = None) -> None:
    """Run as a fake engine process: print vLLM-like startup lines, then serve until terminated."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--itl-ms", type=float, default=5.0)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--exit-code", type=int, default=None, help="exit with this code during startup")
    p.add_argument("--spec-drafts", type=int, default=0)
    p.add_argument("--logprob-shift", type=float, default=0.0)
    p.add_argument("--die-after", type=int, default=None, help="crash after this many chat requests")
    p.add_argument("--speculative-config", default=None, help="vLLM's flag: echoed in the log as vLLM does")
    p.add_argument("--spec-diverges", action="store_true", help="with --speculative-config: change greedy answers")
    p.add_argument("--reply", default=None, help="the answer to every non-streaming chat request")
    p.add_argument("--gpu-gib", type=float, default=0, help="hold this much GPU memory (torch, CUDA) while serving")
    p.add_argument("--metrics-prefix", default="vllm:", help="spec counters as `llamacpp:` for a fake llama-server")
    p.add_argument("--say", action="append", default=[], help="a line to print at startup (a fake engine's log)")
    p.add_argument("--dtype", default="auto", help="vLLM's flag: echoed in the config line as vLLM does")
    p.add_argument("--kv-cache-dtype", default="auto", help="vLLM's flag: echoed in the config line")
    p.add_argument("--max-num-seqs", type=int, default=None, help="vLLM's flag: above 256 startup fails (no room)")
    p.add_argument("--startup-s", type=float, default=0.0, help="seconds to wait before serving (a slow start)")
    args, _vllm_flags = p.parse_known_args(argv)
    time.sleep(args.startup_s)
    for line in args.say:
        print(line, flush=True)
    held = _hold_gpu_memory(args.gpu_gib) if args.gpu_gib else None  # noqa: F841  (kept alive while serving)
    print("INFO Loading weights took 0.25 seconds", flush=True)
    print("INFO Model loading took 0.13 GiB memory and 0.5 seconds", flush=True)
    if args.exit_code is not None:
        print("ERROR scripted startup failure", flush=True)
        sys.exit(args.exit_code)
    if args.max_num_seqs is not None and args.max_num_seqs > 256:
        print(f"ValueError: max_num_seqs ({args.max_num_seqs}) needs more KV cache than there is room for", flush=True)
        sys.exit(1)
    method = json.loads(args.speculative_config).get("method") if args.speculative_config else None
    spec = f"SpeculativeConfig(method='{method}')" if method else "None"
    dtype = {"auto": "bfloat16", "half": "float16", "float": "float32"}.get(args.dtype, args.dtype)
    print(f"INFO Initializing a V1 LLM engine with config: dtype=torch.{dtype}, speculative_config={spec}, "
          f"kv_cache_dtype={args.kv_cache_dtype}", flush=True)  # fmt: skip
    print("INFO [monitor.py:62] [backbone] torch.compile took 1.50 s in total", flush=True)
    print("INFO init engine (profile, create kv cache, warmup model) took 2.00 s", flush=True)
    slower = float(os.environ.get("LADDER_MOCK_SLOWDOWN", "1"))  # one machine of a simulated fleet lagging
    script = Script(
        ttft_ms=args.ttft_ms * slower,
        itl_ms=args.itl_ms * slower,
        tokens=args.tokens,
        die_after=args.die_after,
        logprob_shift=args.logprob_shift,
        spec_drafts_per_token=args.spec_drafts,
        reply=args.reply,
        reply_prefix="diverged " if args.spec_diverges and args.speculative_config else "",
        metrics_prefix=args.metrics_prefix,
    )
    with MockServer(script, port=args.port):
        print("INFO Application startup complete.", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
