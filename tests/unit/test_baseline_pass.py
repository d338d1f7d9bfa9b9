"""The baseline started again after a mixed-engine climb: it scores the llama.cpp rung's answers, and its prompt
logprobs over llama-perplexity's saved contexts check the two engines against each other."""

import json
import random
import struct

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.gguf import gguf_dir
from llm_ladder.engines.llamacpp_quality import read_reference
from llm_ladder.quality.agreement import perplexity
from llm_ladder.testing.mock_replies import VOCAB
from tests.unit.test_llamacpp import PRINTED, server_bin, tiny_gguf  # noqa: F401 (a fixture)

N_CTX, N_CHUNK, N_VOCAB = 8, 2, VOCAB


def write_kld(path, tokens, top_logprob=-0.3):
    """A llama-perplexity logits file whose every scored position puts `top_logprob` on the actual next token and
    spreads the rest as the mock vLLM does (its candidates tok + j at −1.5 − j), everything else at the floor."""
    first, nv = N_CTX // 2, 2 * ((N_VOCAB + 1) // 2) + 4
    scale, floor = 16 / 65535, -16.0
    with path.open("wb") as f:
        f.write(b"_logits_" + struct.pack("<3i", N_CTX, N_VOCAB, N_CHUNK))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        for chunk in tokens:
            for i in range(first, N_CTX - 1):
                lp = np.full(N_VOCAB, floor, dtype=np.float64)
                actual = chunk[i + 1]
                for j in range(1, 20):
                    lp[(actual + j) % N_VOCAB] = max(-1.5 - j, floor)
                lp[actual] = top_logprob
                row = np.zeros(nv, dtype="<u2")
                row[:4] = np.frombuffer(struct.pack("<2f", scale, floor), dtype="<u2")
                row[4 : 4 + N_VOCAB] = np.round((lp - floor) / scale).astype("<u2")
                f.write(row.tobytes())


def test_the_logits_file_reads_back_position_by_position(tmp_path):
    tokens = [[random.Random(c).randrange(VOCAB) for _ in range(N_CTX)] for c in range(N_CHUNK)]
    write_kld(tmp_path / "ref.kld", tokens)
    ref = read_reference(tmp_path / "ref.kld", 5, "llama.cpp F16")
    assert ref.chunks == tokens and ref.scored_from == N_CTX // 2
    assert [p.actual for p in ref.positions] == [t for chunk in tokens for t in chunk[N_CTX // 2 + 1 :]]
    assert perplexity(ref.positions) == pytest.approx(np.exp(0.3), rel=1e-3)
    assert all(p.argmax == p.actual and len(p.top) == 5 for p in ref.positions)
    (tmp_path / "ref.json").write_text(json.dumps({"bos": 1}))  # a model whose contexts start with BOS
    assert all(
        c[0] == 1 and c[1:] == t[1:]
        for c, t in zip(read_reference(tmp_path / "ref.kld", 5, "x").chunks, tokens, strict=True)
    )


def _mixed_climb(llama_bin, tmp_path, model_dir):
    """A fake-vLLM baseline and a llama.cpp rung, llama-perplexity saving tmp_path/saved.kld as its reference;
    returns the run directory and its results.json."""
    (llama_bin.parent / "llama-perplexity").write_text(
        '#!/bin/sh\nfor a; do [ "$prev" = --kl-divergence-base ] && [ ! -e "$a" ] && cp '
        f'{tmp_path / "saved.kld"} "$a"; prev=$a; done\ncat {PRINTED}\n'
    )
    tiny_gguf(gguf_dir(model_dir) / "F16.gguf", 1)  # the baseline model's F16 GGUF, as the store would make it
    plan = {"name": "mixed", "engine": "fake-vllm", "trials": 1,
            "workloads": [{"name": "long", "prompt": "hi", "max_tokens": 8}], "suites": {"enabled": False},
            "rungs": [{"name": "bf16", "model": str(model_dir)},
                      {"name": "q8", "engine": "llama.cpp", "model": str(tiny_gguf(tmp_path / "Q8_0.gguf", 7))}]}  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["climb", str(tmp_path / "plan.yaml"), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "results.json").read_text())


def test_a_mixed_climb_scores_llama_answers_and_checks_the_engines_against_each_other(server_bin, tmp_path, model_dir):  # noqa: F811
    tokens = [[random.Random(c).randrange(VOCAB) for _ in range(N_CTX)] for c in range(N_CHUNK)]
    write_kld(tmp_path / "saved.kld", tokens)
    out, summary = _mixed_climb(server_bin, tmp_path, model_dir)
    _, q8 = summary["rungs"]
    assert q8["answers_scored_by"] == "bf16" and "answers' perplexity" not in q8["not_measured"]
    assert q8["workloads"]["long"]["output_perplexity"]["median"] > 0
    cross = summary["cross_engine"]["llama.cpp F16 GGUF (llama-perplexity)"]
    assert cross["tokens"] == N_CHUNK * (N_CTX - 1 - N_CTX // 2) and cross["same_top"] == 1.0
    assert cross["mean_kl"] < 0.005  # the file encodes the mock's own distribution
    md = (out / "summary.md").read_text()
    assert "(scored by bf16)" in md and "the two engines agree" in md
    assert (out / "logs" / "bf16-scoring.log").is_file()  # the second start logs apart from the measured one


def test_a_damaged_saved_reference_is_reported_and_the_answers_are_still_scored(server_bin, tmp_path, model_dir):  # noqa: F811
    (tmp_path / "saved.kld").write_bytes(b"not llama-perplexity logits")
    _, summary = _mixed_climb(server_bin, tmp_path, model_dir)
    assert summary["cross_engine"] == {} and "could not be read" in summary["cross_engine_error"]
    assert summary["rungs"][1]["answers_scored_by"] == "bf16"
