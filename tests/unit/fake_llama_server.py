"""A stand-in llama-server for unit tests: answers --help / --version like b11434, and otherwise serves the mock
OpenAI server on the given port, logging the loader's `file type` line for the GGUF's name.

FAKE_LLAMA_HELP=old: a build that knows only the old flag names. FAKE_LLAMA_REPACK_CRASH=1: die by SIGSEGV unless
--no-repack is given (the crash the engine retries); =request: healthy, then die so at the first request.
FAKE_LLAMA_BACKEND_DL=1: report a CPU backend loaded from a variant library, as Debian's package does."""

import os
import signal
import sys

NEW = "-lv --spec-type --spec-draft-n-max --model-draft -md --no-webui --no-repack -nr --metrics -np -c -t --alias"
OLD = "--draft-max --model-draft -md --no-webui --no-repack -nr --metrics -np -c -t --alias"

args = sys.argv[1:]
if "--help" in args:
    print(OLD if os.environ.get("FAKE_LLAMA_HELP") == "old" else NEW)
    sys.exit(0)
if "--version" in args:
    print("version: 11434 (fake)\nbuilt with fake for x86_64", file=sys.stderr)
    sys.exit(0)
if "-lv" in args and args[args.index("-m") + 1].startswith("/nonexistent"):  # what doctor asks
    if os.environ.get("FAKE_LLAMA_BACKEND_DL"):
        print("load_backend: loaded CPU backend from /usr/lib/x86_64-linux-gnu/ggml/libggml-cpu-sapphirerapids.so")
    print(
        "0.00.004.495 I cmn  common_param: system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : SSE3 = 1"
        " | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 0 | REPACK = 1 | ",
        file=sys.stderr,
    )
    sys.exit(1)
crash = os.environ.get("FAKE_LLAMA_REPACK_CRASH") if "--no-repack" not in args else None
if crash == "request":
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Crashing(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def do_POST(self):
            os.kill(os.getpid(), signal.SIGSEGV)

    HTTPServer(("127.0.0.1", int(args[args.index("--port") + 1])), Crashing).serve_forever()
elif crash:
    os.kill(os.getpid(), signal.SIGSEGV)
if os.environ.get("FAKE_LLAMA_HANG"):  # loads forever: /health never answers
    signal.pause()
model = args[args.index("-m") + 1]
from llm_ladder.testing.mock_server import main  # noqa: E402

main(["--port", args[args.index("--port") + 1], "--metrics-prefix", "llamacpp:",
      "--say", f"0.00.006.614 I srv    load_model: loading model '{model}'",
      "--spec-drafts", "2" if "--spec-type" in args else "0"])  # fmt: skip
