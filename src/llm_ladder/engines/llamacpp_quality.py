"""Agreement of a llama.cpp rung with its reference, by llama.cpp's own `llama-perplexity --kl-divergence`.

llama-server has no prompt logprobs (llama.cpp #27174), so the vLLM path (top-k prompt logprobs over HTTP) cannot
run. llama-perplexity computes the same quantities over full-vocabulary logits: it saves the reference's logits
of the shipped evaluation text (`--kl-divergence-base`, the F16 GGUF of the plan's baseline model: the same
weights), then reads a rung's against them. Both run with no server up, after the rung is stopped. The chunks are
512 tokens and only each chunk's second half is scored (llama.cpp's method), so 2,088 tokens of text give
1,020 scored positions.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

from llm_ladder.engines.base import EngineError
from llm_ladder.engines.gguf import prepended_bos
from llm_ladder.engines.process import log_tail, run_logged
from llm_ladder.quality.agreement import Agreement, Position, ReferenceLogits

CTX = 512
PATTERNS = {
    "perplexity": r"Mean PPL\(Q\)\s*:\s*([0-9.]+)",
    "baseline_perplexity": r"Mean PPL\(base\)\s*:\s*([0-9.]+)",
    "mean_kl": r"Mean\s+KLD:\s*(-?[0-9.]+)",
    "p99_kl": r"99\.0%\s+KLD:\s*(-?[0-9.]+)",
    "same_top": r"Same top p:\s*([0-9.]+)",
}
CHUNKS = re.compile(r"computing over (\d+) chunks, n_ctx=(\d+)")


def _run(cmd: list[str], log: Path) -> str:
    """Run `cmd`; once more with --no-repack if it dies by a signal (the same policy as the server's)."""
    for attempt in (cmd, [*cmd, "--no-repack"]):
        if (code := run_logged(attempt, log)) >= 0:
            break
    if code != 0:
        raise EngineError(f"llama-perplexity exited with {code} (log {log})", log_tail(log))
    return log.read_text(errors="replace")


def save_reference(binary: Path, reference: Path, text: Path, work_dir: Path, threads: int) -> Path:
    """The reference GGUF's logits over `text`, saved once per reference and text (a name that hashes both); a
    run that did not finish leaves only a `.partial` file, never one a later rung would trust."""
    key = hashlib.sha256(f"{reference.resolve()}\n{text.read_text()}".encode()).hexdigest()[:12]
    out = work_dir / f"llamacpp-reference-{key}.kld"
    if not out.is_file():
        partial = out.with_suffix(".partial")
        cmd = [str(binary), "-m", str(reference), "-f", str(text), "--kl-divergence-base", str(partial),
               "-c", str(CTX), "-t", str(threads)]  # fmt: skip
        _run(cmd, out.with_suffix(".log"))
        out.with_suffix(".json").write_text(json.dumps({"gguf": str(reference), "bos": prepended_bos(reference)}))
        partial.rename(out)
    return out


def read_reference(path: Path, k: int, label: str) -> ReferenceLogits:
    """llama-perplexity's saved logits read back (tools/perplexity: "_logits_", n_ctx, n_vocab, n_chunk, the
    tokens, then per chunk and scored position a float scale and minimum and n_vocab uint16 log-probabilities,
    values below max − 16 stored as 0). Each scored position becomes a `Position` with its top k, so the baseline's
    prompt logprobs over the same contexts compare with it as with any rung."""
    import numpy as np

    with path.open("rb") as f:
        if f.read(8) != b"_logits_":
            raise EngineError(f"{path} is not a llama-perplexity logits file")
        n_ctx, n_vocab, n_chunk = struct.unpack("<3i", f.read(12))
        tokens = np.fromfile(f, dtype="<i4", count=n_chunk * n_ctx).reshape(n_chunk, n_ctx)
        offset = f.tell()
    first, nv = n_ctx // 2, 2 * ((n_vocab + 1) // 2) + 4
    scored = n_ctx - 1 - first
    data = np.memmap(path, dtype="<u2", mode="r", offset=offset, shape=(n_chunk, scored, nv))
    bos = json.loads(path.with_suffix(".json").read_text())["bos"] if path.with_suffix(".json").is_file() else None
    chunks, positions = [], []
    for c in range(n_chunk):
        head = np.ascontiguousarray(data[c, :, :4]).view("<f4")  # (scored, 2): scale, min log-prob
        logprobs = data[c, :, 4 : 4 + n_vocab].astype(np.float32) * head[:, :1] + head[:, 1:2]
        actual = tokens[c, first + 1 :]
        top = np.argpartition(-logprobs, k, axis=1)[:, :k]
        for i in range(scored):
            row = logprobs[i]
            positions.append(Position(int(actual[i]), float(row[actual[i]]), {int(t): float(row[t]) for t in top[i]}))
        context = tokens[c].tolist()
        chunks.append(context if bos is None else [bos, *context[1:]])
    return ReferenceLogits(label=label, chunks=chunks, scored_from=first, positions=positions)


def parse(output: str) -> Agreement:
    """llama-perplexity's KL report as an Agreement; EngineError names a figure it did not print."""
    values = {}
    for key, pattern in PATTERNS.items():
        found = re.findall(pattern, output)
        if not found:
            raise EngineError(f"llama-perplexity printed no {key} ({pattern!r})")
        values[key] = float(found[-1])
    chunks = CHUNKS.findall(output)
    n_chunk, n_ctx = (int(x) for x in chunks[-1]) if chunks else (0, CTX)
    return Agreement(
        tokens=n_chunk * (n_ctx - 1 - n_ctx // 2),
        perplexity=values["perplexity"],
        baseline_perplexity=values["baseline_perplexity"],
        mean_kl=max(0.0, values["mean_kl"]),  # -0.000000 for identical files
        p99_kl=max(0.0, values["p99_kl"]),
        same_top=values["same_top"] / 100,
    )


def kl_divergence(binary: Path, gguf: Path, reference_logits: Path, log: Path, threads: int) -> Agreement:
    """A rung's GGUF against the saved reference logits: perplexity ratio, mean / p99 KL, same top token."""
    cmd = [str(binary), "-m", str(gguf), "--kl-divergence-base", str(reference_logits), "--kl-divergence",
           "-c", str(CTX), "-t", str(threads)]  # fmt: skip
    output = _run(cmd, log)
    how = (
        "llama-perplexity, --no-repack after a crash with repacking" if "--no-repack" in output else "llama-perplexity"
    )
    return parse(output).model_copy(update={"reference": how})
