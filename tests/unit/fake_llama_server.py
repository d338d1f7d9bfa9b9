"""A stand-in llama-server for unit tests: answers --help / --version like b11434, and otherwise serves the mock
OpenAI server on the given port, logging the loader's `file type` line for the GGUF's name.

FAKE_LLAMA_HELP=old: a build that knows only the old flag names. FAKE_LLAMA_REPACK_CRASH=1: die by SIGSEGV unless
--no-repack is given (the crash the engine retries)."""

import os
import signal
import sys

NEW = "--spec-type --spec-draft-n-max --model-draft -md --no-webui --no-repack -nr --metrics -np -c -t --alias"
OLD = "--draft-max --model-draft -md --no-webui --no-repack -nr --metrics -np -c -t --alias"

args = sys.argv[1:]
if "--help" in args:
    print(OLD if os.environ.get("FAKE_LLAMA_HELP") == "old" else NEW)
    sys.exit(0)
if "--version" in args:
    print("version: 11434 (fake)\nbuilt with fake for x86_64", file=sys.stderr)
    sys.exit(0)
if os.environ.get("FAKE_LLAMA_REPACK_CRASH") and "--no-repack" not in args:
    os.kill(os.getpid(), signal.SIGSEGV)
if os.environ.get("FAKE_LLAMA_HANG"):  # loads forever: /health never answers
    signal.pause()
model = args[args.index("-m") + 1]
from llm_ladder.mock_server import main  # noqa: E402

main(["--port", args[args.index("--port") + 1], "--metrics-prefix", "llamacpp:",
      "--say", f"0.00.006.614 I srv    load_model: loading model '{model}'",
      "--spec-drafts", "2" if "--spec-type" in args else "0"])  # fmt: skip
