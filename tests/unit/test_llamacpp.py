"""The llama.cpp engine against a stand-in llama-server (fake_llama_server.py): flags, health, proof of the file
type, the repack-crash retry, request extras, llama-perplexity's output, and plans that mix engines."""

import json
import os
import stat
import sys
from pathlib import Path

import httpx
import pytest

from llm_ladder.engines.base import EngineError
from llm_ladder.engines.llamacpp import LlamaCppEngine, help_text
from llm_ladder.engines.llamacpp_quality import parse
from llm_ladder.measure.metrics import parse_spec_counters
from llm_ladder.plan.loading import parse_plan
from llm_ladder.plan.schema import DEFAULT_WORKLOADS, PlanError

FAKE = Path(__file__).with_name("fake_llama_server.py")
PRINTED = Path("/tmp") / f"ladder-fake-llama-perplexity-{os.getpid()}.txt"


@pytest.fixture
def server_bin(tmp_path, monkeypatch):
    """An executable `llama-server` in tmp_path running the fake with this Python."""
    exe = tmp_path / "bin" / "llama-server"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    touch_base = 'for a; do [ "$prev" = --kl-divergence-base ] && [ ! -e "$a" ] && : > "$a"; prev=$a; done'
    for name, script in (("llama-quantize", "exit 1"), ("llama-perplexity", f"{touch_base}\ncat {PRINTED}")):
        (exe.parent / name).write_text(f"#!/bin/sh\n{script}\n")
        (exe.parent / name).chmod(0o755)
    PRINTED.write_text(LLAMA_PERPLEXITY_OUTPUT)
    monkeypatch.setenv("LLAMA_SERVER", str(exe))
    help_text.cache_clear()
    yield exe
    help_text.cache_clear()


def tiny_gguf(path, file_type):
    """A GGUF with metadata only, its general.file_type set (llama.cpp's LlamaFileType: 7 Q8_0, 15 Q4_K_M)."""
    from gguf import GGUFWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(path, "llama")
    writer.add_file_type(file_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return path


def plan_with(rungs, engine="llama.cpp"):
    return parse_plan({"name": "p", "engine": engine, "rungs": rungs})


def test_rung_args_are_checked_against_the_rungs_engine():
    plan = plan_with([{"name": "q8", "model": "m", "quant": "Q8_0", "threads": 2}])
    assert plan.rungs[0].args == {"quant": "Q8_0", "threads": 2}
    with pytest.raises(PlanError, match=r"rungs\.0\.dtype: unknown key for engine 'llama.cpp'"):
        plan_with([{"name": "q8", "model": "m", "dtype": "bfloat16"}])
    mixed = plan_with([{"name": "bf16", "model": "m", "dtype": "bfloat16"},
                       {"name": "q8", "model": "m", "engine": "llama.cpp", "quant": "Q8_0"}], engine="vllm")  # fmt: skip
    assert [mixed.engine_of(r) for r in mixed.rungs] == ["vllm", "llama.cpp"]
    with pytest.raises(PlanError, match="unknown engine 'sglang'"):
        plan_with([{"name": "a", "model": "m"}], engine="sglang")


def test_speculation_translates_to_this_builds_flags(server_bin, monkeypatch):
    engine = LlamaCppEngine()
    ngram = plan_with([{"name": "n", "model": "/m/Q8_0.gguf", "speculative": {
        "method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 3}}]).rungs[0]  # fmt: skip
    cmd = engine.command(ngram, "/m/Q8_0.gguf", 8000, repack=True)
    assert cmd[cmd.index("--spec-type") + 1] == "ngram-simple"
    assert cmd[cmd.index("--spec-ngram-simple-size-n") + 1] == "3"
    assert cmd[cmd.index("--spec-ngram-simple-size-m") + 1] == "5"
    assert "--metrics" in cmd and "--no-repack" not in cmd
    draft = ngram.model_copy(update={"speculative": {"method": "draft_model", "model": "/d.gguf",
                                                     "num_speculative_tokens": 6}})  # fmt: skip
    cmd = engine.command(draft, "/m/Q8_0.gguf", 8000, repack=False)
    assert cmd[cmd.index("--spec-type") + 1] == "draft-simple"  # without it the draft model never drafts
    assert cmd[cmd.index("--model-draft") + 1] == "/d.gguf" and cmd[cmd.index("--spec-draft-n-max") + 1] == "6"
    assert "--no-repack" in cmd
    monkeypatch.setenv("FAKE_LLAMA_HELP", "old")
    help_text.cache_clear()
    with pytest.raises(EngineError, match="knows none of --spec-type"):
        engine.command(draft, "/m/Q8_0.gguf", 8000, repack=True)


def test_serves_verifies_the_file_type_and_counts_drafts(server_bin, tmp_path):
    engine = LlamaCppEngine()
    q8 = tiny_gguf(tmp_path / "Q8_0.gguf", 7)
    rung = plan_with([{"name": "q8", "model": str(q8), "speculative": {"method": "ngram"}}]).rungs[0]
    server = engine.start(rung, rung.model, tmp_path / "run")
    try:
        assert engine.verify(rung, server) == []
        with_imatrix = rung.model_copy(update={"args": {"imatrix": True}})
        assert engine.verify(with_imatrix, server) == ["Q8_0.gguf was not quantized with an importance matrix"]
        mislabelled = tiny_gguf(tmp_path / "other" / "Q4_K_M.gguf", 7)
        assert engine.verify(rung.model_copy(update={"model": str(mislabelled)}), server) == [
            f"log does not show {mislabelled} being loaded", "Q4_K_M.gguf holds file type Q8_0, not Q4_K_M"]  # fmt: skip
        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}
        assert httpx.post(f"{server.base_url}/v1/chat/completions", json=body).status_code == 200
        spec = parse_spec_counters(httpx.get(f"{server.base_url}/metrics").text, "llamacpp:")
        assert spec.draft_tokens > 0
    finally:
        assert engine.stop(server).leftover_pids == []


@pytest.mark.parametrize(("crash", "when"), [("1", "at startup"), ("request", "at its first request")])
def test_a_repack_crash_is_retried_once_without_repack(server_bin, tmp_path, monkeypatch, crash, when):
    monkeypatch.setenv("FAKE_LLAMA_REPACK_CRASH", crash)
    engine = LlamaCppEngine()
    rung = plan_with([{"name": "q4", "model": str(tmp_path / "Q4_K_M.gguf")}]).rungs[0]
    server = engine.start(rung, rung.model, tmp_path / "run")
    try:
        assert "--no-repack" in server.command
        assert server.startup.notes == [f"llama-server died by signal 11 {when}; started again with --no-repack"]
    finally:
        engine.stop(server)
    no_repack = plan_with([{"name": "q4", "model": str(tmp_path / "Q4_K_M.gguf"), "repack": False}]).rungs[0]
    monkeypatch.setenv("FAKE_LLAMA_REPACK_CRASH", "")
    server = engine.start(no_repack, no_repack.model, tmp_path / "run2")
    engine.stop(server)
    assert server.startup.notes == []


@pytest.mark.parametrize("dl", ["", "1"])
def test_doctor_names_the_cpu_backend_and_its_features(server_bin, monkeypatch, dl):
    from llm_ladder.ops.doctor import llamacpp

    monkeypatch.setenv("FAKE_LLAMA_BACKEND_DL", dl)
    check = llamacpp(needed=True)
    assert check.status == "ok" and "version: 11434 (fake)" in check.message
    backend = "libggml-cpu-sapphirerapids.so" if dl else "built in"
    assert f"CPU backend {backend}; SSE3 AVX2 AVX512 REPACK;" in check.message  # AMX_INT8 = 0 left out


def test_a_slow_start_is_a_timeout_not_a_crash_to_retry(server_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_HANG", "1")
    rung = plan_with([{"name": "q8", "model": str(tmp_path / "Q8_0.gguf"), "startup_timeout_s": 1}]).rungs[0]
    with pytest.raises(EngineError, match="not healthy after 1 s") as err:
        LlamaCppEngine().start(rung, rung.model, tmp_path / "run")
    assert "died by signal" not in str(err.value)
    assert not (tmp_path / "run" / "logs" / "q8-no-repack.log").exists()  # stopped by us, not restarted


def test_a_missing_configured_server_is_an_error_not_a_fallback(server_bin, tmp_path):
    from llm_ladder.engines.llamacpp import find_binary

    with pytest.raises(EngineError, match="the rung's `server`"):
        find_binary("llama-server", str(tmp_path / "no-such-llama-server"))
    assert find_binary("llama-server") == server_bin  # $LLAMA_SERVER when the rung names none


def test_requests_replace_min_tokens_where_it_matters():
    short, long, edit = DEFAULT_WORKLOADS
    engine = LlamaCppEngine()
    assert engine.request_extras(long) == {"cache_prompt": False, "ignore_eos": True}  # floor == ceiling
    assert engine.request_extras(edit) == {"cache_prompt": False}  # an edit ends at EOS after the copy
    assert engine.request_extras(short) == {"cache_prompt": False}


def test_file_type_is_read_from_the_gguf(tmp_path):
    from llm_ladder.engines.gguf import file_type

    assert file_type(tiny_gguf(tmp_path / "a.gguf", 15)) == "Q4_K_M"
    assert file_type(tiny_gguf(tmp_path / "b.gguf", 1)) == "F16"


LLAMA_PERPLEXITY_OUTPUT = """
kl_divergence: computing over 4 chunks, n_ctx=512, batch_size=2048, n_seq=4
====== Perplexity statistics ======
Mean PPL(Q)                   :  11.480320 ±   0.512345
Mean PPL(base)                :  11.230034 ±   0.498765
Mean PPL(Q)/PPL(base)         :   1.022287 ±   0.004561
====== KL divergence statistics ======
Mean    KLD:   0.021330 ±   0.000812
Maximum KLD:   1.234567
99.9%   KLD:   0.812345
99.0%   KLD:   0.201234
====== Token probability statistics ======
Same top p: 93.137 ± 0.791 %
"""


def test_llama_perplexity_output_becomes_an_agreement():
    a = parse(LLAMA_PERPLEXITY_OUTPUT)
    assert a.tokens == 4 * 255
    assert a.mean_kl == pytest.approx(0.02133) and a.p99_kl == pytest.approx(0.201234)
    assert a.same_top == pytest.approx(0.93137)
    assert a.perplexity_ratio == pytest.approx(11.48032 / 11.230034)
    with pytest.raises(EngineError, match="no same_top"):
        parse(LLAMA_PERPLEXITY_OUTPUT.replace("Same top p", "Other"))


def test_gguf_variants_pass_gguf_files_and_name_bad_input(tmp_path):
    from llm_ladder.engines.gguf import gguf_dir, gguf_variant

    given = tmp_path / "mine.gguf"
    given.write_bytes(b"GGUF")
    assert gguf_variant(str(given), "Q8_0", lambda: tmp_path, lambda: tmp_path) == given
    with pytest.raises(EngineError, match=r"local model directory or a \.gguf file"):
        gguf_variant("org/model", "Q8_0", lambda: tmp_path, lambda: tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(EngineError, match="unknown GGUF type 'Q9'"):
        gguf_variant(str(model), "Q9", lambda: tmp_path, lambda: tmp_path)
    assert gguf_dir(model) == tmp_path / "m-gguf"


def test_builds_are_kept_apart_per_cpu_kind(monkeypatch, tmp_path):
    from llm_ladder.engines.llamacpp_build import build_dir, installed_bin, isa_key

    monkeypatch.setenv("LADDER_CACHE_DIR", str(tmp_path))
    amx = "flags\t\t: fpu sse avx2 fma f16c avx512f avx512bw avx512vl amx_tile amx_int8 amx_bf16\n"
    avx2 = "flags\t\t: fpu sse avx2 fma f16c\n"
    assert isa_key(avx2) == "avx2-f16c-fma"
    assert build_dir(amx) != build_dir(avx2)  # a native AMX build would die with SIGILL on an AVX2 machine
    assert installed_bin(avx2) is None
    bin_dir = build_dir(avx2) / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("llama-server", "llama-quantize", "llama-perplexity"):
        (bin_dir / name).write_text("")
    assert installed_bin(avx2) == bin_dir and installed_bin(amx) is None


def test_llama_perplexity_is_run_again_without_repack_after_a_crash(tmp_path):
    from llm_ladder.engines.llamacpp_quality import kl_divergence

    fake, printed = tmp_path / "llama-perplexity", tmp_path / "printed.txt"
    printed.write_text(LLAMA_PERPLEXITY_OUTPUT)
    fake.write_text(f'#!/bin/sh\ncase "$*" in *--no-repack*) cat {printed};; *) kill -ILL $$;; esac\n')
    fake.chmod(0o755)
    found = kl_divergence(fake, tmp_path / "m.gguf", tmp_path / "ref.kld", tmp_path / "log", 2)
    assert found.mean_kl == pytest.approx(0.02133)
    assert found.reference == "llama-perplexity, --no-repack after a crash with repacking"


def test_the_build_turns_on_what_the_cpu_has():
    from llm_ladder.engines.llamacpp_build import CMAKE_ARGS, isa_args

    avx2 = isa_args("flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2\n")
    assert "-DGGML_AVX2=ON" in avx2 and "-DGGML_AVX512=OFF" in avx2 and "-DGGML_AVX512_VNNI=OFF" in avx2
    spr = isa_args("flags\t\t: avx2 fma f16c avx512f avx512_vnni avx512_bf16 amx_int8 amx_tile\n")
    assert "-DGGML_AVX512=ON" in spr and "-DGGML_AVX512_BF16=ON" in spr
    assert "-DGGML_AMX_INT8=OFF" in CMAKE_ARGS  # ggml's AMX kernels died with SIGILL here (llamacpp_build.py)


def test_a_climb_on_llama_cpp_reports_what_it_cannot_measure_as_na(server_bin, tmp_path):
    """Through `ladder climb`: the GGUF is served, agreement comes from llama-perplexity (the fake prints its
    report), and what llama-server cannot give (answers' perplexity, startup stages) is `n/a (why)`, not a failure."""
    from typer.testing import CliRunner

    from llm_ladder.cli.main import app

    gguf = tiny_gguf(tmp_path / "models" / "Q8_0.gguf", 7)
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"name": "l", "engine": "llama.cpp", "trials": 1,
                                "workloads": [{"name": "long", "prompt": "hi", "max_tokens": 8, "min_tokens": 8}],
                                "suites": {"enabled": False}, "rungs": [{"name": "q8", "model": str(gguf)}]}))  # fmt: skip
    result = CliRunner().invoke(app, ["climb", str(plan), "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (q8,) = json.loads((tmp_path / "run" / "results.json").read_text())["rungs"]
    assert q8["status"] == "ok" and q8["engine"] == "llama.cpp"
    assert q8["agreement"]["same_top"] == pytest.approx(0.93137) and "llama-perplexity" in q8["agreement"]["reference"]
    assert q8["not_measured"]["answers' perplexity"] == "llama.cpp serves no prompt logprobs"
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "n/a (llama.cpp serves no prompt logprobs)" in md and "n/a (llama.cpp logs no startup stages" in md
