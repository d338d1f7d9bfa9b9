"""`engine: llama.cpp`: llama.cpp's llama-server, one per rung, on a GGUF made from the store's model.

On CPUs and Jetson boards llama.cpp is what most people run. The server speaks the OpenAI API, but differs from
vLLM where the measurements care (checked against b11434's tools/server and common/arg.cpp):
- no `min_tokens` (unknown fields are ignored): a workload whose floor is its ceiling gets `ignore_eos` instead;
  no prompt logprobs (#27174): agreement comes from `llama-perplexity --kl-divergence` (llamacpp_quality.py);
  no token ids in answers: greedy identity compares text.
- `/health` is 503 while loading, 200 when ready; `--metrics` exposes `llamacpp:spec_decode_*` counters named as
  vLLM's are.
- speculation needs `--spec-type`: `--model-draft` alone loads a draft and never drafts.
- weight repacking (on by default) is a large CPU win (Q8_0 132 vs 87 tok/s, AMX machine) but quantized models have
  crashed in the CPU repack paths on some builds and machines (llama.cpp #20824, #16479, #19561): a rung that dies
  by a signal at startup is started once more with `--no-repack`, and the result says so.
- flag names change between builds (`--draft-max` became `--spec-draft-n-max`): they are read from `--help`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field

from llm_ladder.engines.base import Capabilities, Engine, EngineArgs, EngineError, Server, StopReport
from llm_ladder.engines.gguf import (
    QUANT_TYPES,
    file_type,
    gguf_variant,
    imatrix_entries,
    importance_matrix,
    tensor_types,
)
from llm_ladder.engines.llamacpp_build import converter, installed_bin, program
from llm_ladder.engines.llamacpp_quality import kl_divergence, read_reference, save_reference
from llm_ladder.engines.process import ManagedProcess, free_port, log_tail, port_in_use
from llm_ladder.engines.vllm import RUN_MARKER
from llm_ladder.models.calibrate import CALIBRATION_TEXT
from llm_ladder.plan.schema import Rung
from llm_ladder.quality.agreement import Agreement, ReferenceLogits

LOADING = re.compile(r"loading model '([^']+)'")
KV_TYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32, "q4_1": 20 / 32,
                 "q4_0": 18 / 32, "iq4_nl": 18 / 32}  # fmt: skip
"""Bytes per element of llama.cpp's KV-cache types (a block of 32 values with its scale)."""


class LlamaCppArgs(EngineArgs):
    """A rung's llama.cpp settings."""

    quant: str = "F16"
    """GGUF type the store makes with llama-quantize (F16 from the model directory; ignored for a .gguf model)."""
    draft_quant: str | None = None
    """GGUF type of a draft model (default: `quant`)."""
    threads: int | None = Field(default=None, ge=1)
    """-t; default: every CPU this process may use."""
    ctx_size: int = Field(default=8192, gt=0)
    """-c, shared by the `parallel` slots."""
    parallel: int = Field(default=4, ge=1)
    """-np: requests decoded at once (the task suites send several)."""
    repack: bool = True
    imatrix: bool = False
    """Quantize with llama-imatrix's importance matrix of the shipped calibration text (K-quants and IQ types
    keep the weights that matter most more precisely); the GGUF is `<quant>-imatrix.gguf`."""
    server: str | None = None
    """The llama-server binary; default $LLAMA_SERVER, then PATH, then the tool's build (`ladder engines
    install llama.cpp`)."""


def find_binary(name: str, configured: str | None = None, build: Callable[[], Path] | None = None) -> Path:
    """A llama.cpp program: `configured`, else $LLAMA_SERVER's directory, PATH, the tool's own build, then `build`
    (an extra program the tool's build makes on first use)."""
    if configured and not (Path(configured).is_file() and os.access(configured, os.X_OK)):
        raise EngineError(f"{name} {configured!r} (the rung's `server`) is not an executable file")
    env = os.environ.get("LLAMA_SERVER")
    candidates = [configured] if configured else []
    candidates += [str(Path(env).with_name(name))] if env and name != "llama-server" else [env] if env else []
    candidates += [shutil.which(name)]
    candidates += [str(built / name)] if (built := installed_bin()) else []
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    if build is not None and installed_bin() is not None:
        return build()
    raise EngineError(f"{name} not found: set $LLAMA_SERVER, put llama.cpp on PATH, or build it with "
                      "`ladder engines install llama.cpp` (10-15 minutes on 2 cores, once)")  # fmt: skip


@cache
def help_text(binary: Path) -> str:
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60, check=False)
    return out.stdout + out.stderr


def version(binary: Path) -> str:
    """`version: 11434 (5e03bdd8)` and the compiler line, as the binary reports them."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    return " ".join((out.stdout + out.stderr).strip().splitlines()[:2])


SYSTEM_INFO = re.compile(r"system_info: .*?\| (CPU : .*)")
BACKEND = re.compile(r"load_backend: loaded (\S+) backend from (\S+)")


def cpu_backend(binary: Path) -> str:
    """The CPU code the binary runs here: the backend library a GGML_BACKEND_DL build picks for this CPU (Debian's
    14 variants) or "built in", and the features it was compiled with (`system_info`, printed at trace level).
    Asked of a server that cannot load its model, so it stops right after printing them."""
    cmd = [str(binary), flag(binary, "-lv", "--verbosity"), "4", "-m", "/nonexistent/ladder-doctor.gguf"]
    cmd += ["--host", "127.0.0.1", "--port", str(free_port("127.0.0.1"))]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return "CPU backend unknown (the binary did not exit within 60 s)"
    text = out.stdout + out.stderr
    libs = [Path(lib).name for kind, lib in BACKEND.findall(text) if kind == "CPU"]
    info = SYSTEM_INFO.search(text)
    on = (
        [f.split(" = ")[0] for f in info.group(1).removeprefix("CPU : ").split(" | ") if f.endswith("= 1")]
        if info
        else []
    )
    return f"CPU backend {', '.join(libs) or 'built in'}; " + (" ".join(on) if on else "features not reported")


def flag(binary: Path, *names: str) -> str:
    """The first of `names` this build knows."""
    text = help_text(binary)
    for name in names:
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text):
            return name
    raise EngineError(f"{binary} knows none of {', '.join(names)} (too old a llama.cpp?)")


def spec_args(binary: Path, spec: dict[str, Any], draft_gguf: Path | None) -> list[str]:
    """vLLM's speculation vocabulary in llama-server flags: n-gram → ngram-simple, draft_model → draft-simple."""
    n = str(spec.get("num_speculative_tokens", 4))
    method = spec.get("method")
    if method == "ngram":
        size_n = str(spec.get("prompt_lookup_max", 4))
        return [flag(binary, "--spec-type"), "ngram-simple", "--spec-ngram-simple-size-n", size_n,
                "--spec-ngram-simple-size-m", n]  # fmt: skip
    if method == "draft_model" and draft_gguf is not None:
        return [flag(binary, "--spec-type"), "draft-simple", flag(binary, "--model-draft", "-md"), str(draft_gguf),
                flag(binary, "--spec-draft-n-max", "--draft-max"), n]  # fmt: skip
    raise EngineError(f"llama.cpp rungs speculate with method ngram or draft_model, not {method!r}")


class CrashedAtStartup(EngineError):
    """The server died by a signal before it was healthy or at its first request (a crash, not a bad flag)."""


class FirstRequestFailed(EngineError):
    """The server was healthy but its first request failed."""


class LlamaCppEngine(Engine):
    """Starts one llama-server per rung on a free loopback port, logs to the run directory."""

    name = "llama.cpp"
    Args = LlamaCppArgs
    speed_knobs = frozenset({"threads", "parallel", "repack"})
    capabilities = Capabilities(spec_metrics="llamacpp:", batch_invariant=False)

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host, self.port = host, port

    def preflight(self) -> None:
        if self.port is not None and port_in_use(self.port, self.host):
            raise EngineError(f"port {self.port} on {self.host} is already in use")

    def prepare(self, rung: Rung, notify: Any = print) -> Rung:
        """The rung with its model (and draft) resolved to GGUF files, made now if missing."""
        args = self.args(rung)

        def quantizer() -> Path:
            return find_binary("llama-quantize", _sibling(args.server, "llama-quantize"))

        def imatrix(f16: Path, log: Path) -> Path:
            binary = find_binary(
                "llama-imatrix", _sibling(args.server, "llama-imatrix"), lambda: program("llama-imatrix", notify)
            )
            notify(f"computing an importance matrix of {f16.name} over the shipped calibration text (llama-imatrix)")
            return importance_matrix(f16, binary, CALIBRATION_TEXT, args.threads or len(os.sched_getaffinity(0)), log)

        matrix = imatrix if args.imatrix else None
        update: dict[str, Any] = {
            "model": str(gguf_variant(rung.model, args.quant, quantizer, converter, notify, matrix))
        }
        if rung.speculative and isinstance(rung.speculative.get("model"), str):
            draft_quant = args.draft_quant or args.quant
            draft = gguf_variant(rung.speculative["model"], draft_quant, quantizer, converter, notify)
            update["speculative"] = {**rung.speculative, "model": str(draft)}
        return rung.model_copy(update=update)

    def command(self, rung: Rung, model_path: str, port: int, repack: bool) -> list[str]:
        args = self.args(rung)
        binary = find_binary("llama-server", args.server)
        cmd = [str(binary), "-m", model_path, "--alias", rung.label, "--host", self.host, "--port", str(port)]
        cmd += ["--metrics", flag(binary, "--no-webui", "--no-ui"), "-np", str(args.parallel)]
        cmd += ["-c", str(args.ctx_size), "-t", str(args.threads or len(os.sched_getaffinity(0)))]
        if not repack:
            cmd.append(flag(binary, "--no-repack", "-nr"))
        if rung.speculative:
            draft = rung.speculative.get("model")
            cmd += spec_args(binary, rung.speculative, Path(draft) if draft else None)
        return cmd + list(rung.extra_args)

    def start(self, rung: Rung, model_path: str, run_dir: Path) -> Server:
        repack = self.args(rung).repack
        try:
            return self._start(rung, model_path, run_dir, repack)
        except CrashedAtStartup as crash:
            if not repack:
                raise
            server = self._start(rung, model_path, run_dir, repack=False)
            server.startup.notes.append(f"{crash}; started again with --no-repack")
            return server

    def _start(self, rung: Rung, model_path: str, run_dir: Path, repack: bool) -> Server:
        port = self.port or free_port(self.host)
        cmd = self.command(rung, model_path, port, repack)
        log_path = run_dir / "logs" / f"{rung.name}{'' if repack else '-no-repack'}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"# {' '.join(cmd)}\n")
        t0 = time.monotonic()
        proc = ManagedProcess(cmd, log_path, env={**rung.env, RUN_MARKER: str(run_dir.resolve())})
        base_url = f"http://{self.host}:{port}"
        try:
            proc.wait_healthy(f"{base_url}/health", rung.startup_timeout_s)
            _first_request(proc, base_url, rung)
        except EngineError as err:
            code = proc.exit_code  # read before stopping: a server we stop after a timeout did not crash
            proc.stop(grace_s=10)
            if code is not None and code < 0:
                stage = "at its first request" if isinstance(err, FirstRequestFailed) else "at startup"
                raise CrashedAtStartup(f"llama-server died by signal {-code} {stage}", err.log_tail) from None
            raise
        except BaseException:
            proc.stop(grace_s=10)
            raise
        server = Server(base_url, rung.label, cmd, log_path, proc)
        server.startup.total_s = time.monotonic() - t0
        return server

    def stop(self, server: Server) -> StopReport:
        return server.process.stop()

    def verify(self, rung: Rung, server: Server) -> list[str]:
        """The plan's own patterns; the log shows the rung's GGUF loaded, and the file is the type the rung asks
        for (its `general.file_type`: llama-server no longer logs it at the default verbosity)."""
        text = server.log_path.read_text(errors="replace")
        problems = [f"log lacks /{p}/" for p in rung.expect_log if not re.search(p, text)]
        if rung.model not in LOADING.findall(text):
            problems.append(f"log does not show {rung.model} being loaded")
        asked = Path(rung.model).stem.removesuffix("-imatrix")
        if asked in QUANT_TYPES and (found := file_type(Path(rung.model))) != asked:
            problems.append(f"{Path(rung.model).name} holds file type {found}, not {asked}")
        if self.args(rung).imatrix and not imatrix_entries(Path(rung.model)):
            problems.append(f"{Path(rung.model).name} was not quantized with an importance matrix")
        return problems

    def offline_agreement(self, rung: Rung, baseline_model: str, text: Path, work_dir: Path) -> Agreement:
        """KL against the baseline model's F16 GGUF (made if missing) by llama-perplexity, the server stopped."""
        args = self.args(rung)
        binary = find_binary("llama-perplexity", _sibling(args.server, "llama-perplexity"))
        reference = gguf_variant(baseline_model, "F16", lambda: binary.with_name("llama-quantize"), converter)
        threads = args.threads or len(os.sched_getaffinity(0))
        work_dir.mkdir(parents=True, exist_ok=True)
        logits = save_reference(binary, reference, text, work_dir, threads)
        found = kl_divergence(binary, Path(rung.model), logits, work_dir / f"{rung.name}.llama-perplexity.log", threads)
        return found.model_copy(update={"reference": f"{reference} ({found.reference})"})

    def reference_logits(self, work_dir: Path, k: int) -> ReferenceLogits | None:
        """The newest saved reference in `work_dir`: the baseline model's F16 GGUF, by llama-perplexity."""
        saved = sorted(work_dir.glob("llamacpp-reference-*.kld"), key=lambda p: p.stat().st_mtime)
        return read_reference(saved[-1], k, "llama.cpp F16 GGUF (llama-perplexity)") if saved else None

    def kv_cache_bytes(self, rung: Rung, server: Server) -> float | None:
        """The mean of the K and V cache types the command sets (`-ctk`, `-ctv`), each llama.cpp's F16 if unset."""
        k = _flag_value(server.command, "-ctk", "--cache-type-k") or "f16"
        v = _flag_value(server.command, "-ctv", "--cache-type-v") or "f16"
        sizes = [KV_TYPE_BYTES.get(t.lower()) for t in (k, v)]
        return None if None in sizes else sum(s for s in sizes if s is not None) / 2

    def describe_weights(self, rung: Rung) -> str | None:
        """The GGUF's tensor types by count: a K-quant's name hides the fallbacks (SmolLM2's 576 columns)."""
        types = tensor_types(Path(rung.model))
        return f"{Path(rung.model).name}: " + ", ".join(f"{n} × {t}" for t, n in types.items())

    def request_extras(self, workload: Any) -> dict[str, Any]:
        """No prompt cache between trials (TTFT must include the prefill); `ignore_eos` where vLLM gets a floor
        equal to the ceiling (the long workload), nothing where the floor is lower (an edit ends at EOS)."""
        extras: dict[str, Any] = {"cache_prompt": False}
        if workload.min_tokens and workload.min_tokens >= workload.max_tokens:
            extras["ignore_eos"] = True
        return extras


def _first_request(proc: ManagedProcess, base_url: str, rung: Rung) -> None:
    """Two greedy tokens before the server counts as started: the repack crashes seen so far hit the first
    mat-mul over quantized weights, which /health does not reach (it answers before any is run)."""
    body = {"model": rung.label, "prompt": "Hello", "max_tokens": 2, "temperature": 0}
    try:
        httpx.post(f"{base_url}/v1/completions", json=body, timeout=rung.startup_timeout_s).raise_for_status()
    except httpx.HTTPError as err:
        with suppress(subprocess.TimeoutExpired):
            proc.proc.wait(timeout=5)  # a crash closes the connection a moment before the process is reaped
        raise FirstRequestFailed(f"llama-server failed its first request ({err})", log_tail(proc.log_path)) from None


def _flag_value(cmd: list[str], *names: str) -> str | None:
    """The last value given to any of `names` (`-x v` or `--x=v`)."""
    found = None
    for i, arg in enumerate(cmd):
        name, eq, value = arg.partition("=")
        if name in names:
            found = value if eq else (cmd[i + 1] if i + 1 < len(cmd) else None)
    return found


def _sibling(server: str | None, name: str) -> str | None:
    return str(Path(server).with_name(name)) if server else None
