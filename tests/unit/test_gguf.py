"""GGUF variants the store makes for llama.cpp rungs: which programs run with which arguments, and what the
files then say about themselves."""

import json
import sys

import pytest

from llm_ladder.engines.base import EngineError
from llm_ladder.engines.gguf import gguf_dir, gguf_variant, imatrix_entries, importance_matrix
from tests.unit.test_llamacpp import tiny_gguf


def recorder(path, log):
    """An executable that appends its argv to `log` as JSON and creates the file after `out_flag` (or the second
    positional argument, as llama-quantize takes its output)."""
    path.write_text(
        f"#!{sys.executable}\nimport json, sys\nargs = sys.argv[1:]\nopen({str(log)!r}, 'a').write(json.dumps(args) + '\\n')\n"
        "out = args[args.index('-o') + 1] if '-o' in args else [a for a in args if not a.startswith('-')][-2]\n"
        "open(out, 'w').write('made')\n"
    )
    path.chmod(0o755)
    return path


def test_an_imatrix_variant_is_quantized_with_the_matrix_of_the_f16(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    tiny_gguf(gguf_dir(model) / "F16.gguf", 1)
    calls = tmp_path / "calls.jsonl"
    quantizer = recorder(tmp_path / "llama-quantize", calls)
    imatrix_bin = recorder(tmp_path / "llama-imatrix", calls)
    text = tmp_path / "calibration.txt"
    text.write_text("text")
    made = []

    def imatrix(f16, log):
        made.append(f16)
        return importance_matrix(f16, imatrix_bin, text, 2, log)

    out = gguf_variant(str(model), "Q4_K_M", lambda: quantizer, lambda: tmp_path, lambda _: None, imatrix)
    assert out == gguf_dir(model) / "Q4_K_M-imatrix.gguf" and made == [gguf_dir(model) / "F16.gguf"]
    imatrix_args, quantize_args = (json.loads(line) for line in calls.read_text().splitlines())
    matrix = gguf_dir(model) / "imatrix-calibration.gguf"
    assert imatrix_args[imatrix_args.index("-m") + 1] == str(made[0]) and "--no-ppl" in imatrix_args
    assert quantize_args[:2] == ["--imatrix", str(matrix)] and quantize_args[-1] == "Q4_K_M"
    plain = gguf_variant(str(model), "Q4_K_M", lambda: quantizer, lambda: tmp_path, lambda _: None)
    assert plain.name == "Q4_K_M.gguf"  # the two variants are kept apart
    assert gguf_variant(str(model), "Q4_K_M", lambda: 1 / 0, lambda: 1 / 0, lambda _: None, imatrix) == out  # made once


def test_the_file_says_whether_an_importance_matrix_was_used(tmp_path):
    from gguf import GGUFWriter

    assert imatrix_entries(tiny_gguf(tmp_path / "plain.gguf", 15)) is None
    writer = GGUFWriter(tmp_path / "with.gguf", "llama")
    writer.add_uint32("quantize.imatrix.entries_count", 210)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert imatrix_entries(tmp_path / "with.gguf") == 210


def test_only_known_extra_programs_are_built(monkeypatch, tmp_path):
    from llm_ladder.engines import llamacpp_build

    monkeypatch.setenv("LADDER_CACHE_DIR", str(tmp_path))
    with pytest.raises(EngineError, match="not built for this CPU"):
        llamacpp_build.program("llama-imatrix")
    bin_dir = llamacpp_build.build_dir() / "bin"
    bin_dir.mkdir(parents=True)
    for name in llamacpp_build.TARGETS:
        (bin_dir / name).write_text("")
    with pytest.raises(EngineError, match="not a program the tool builds"):
        llamacpp_build.program("llama-cli")
    assert llamacpp_build.program("llama-quantize") == bin_dir / "llama-quantize"
