"""GGUF files for llama.cpp rungs, made from the store's Hugging Face directories.

F16 comes from llama.cpp's own convert_hf_to_gguf.py (from the pinned tree, with its own gguf-py: PyPI's `gguf`
lags the converter), every other type from that F16 by `llama-quantize`. They sit beside the model directory in
`<name>-gguf/<TYPE>.gguf`, made once; an interrupted conversion leaves a `.partial` file, never a GGUF.
A rung whose model is already a .gguf file is served as it is.

What a quantization type really does to a model is in the file, not in its name: Q4_K_M on SmolLM2 stores most
tensors in other types, because 576 columns do not split into K-quant super-blocks of 256. `tensor_types` reads
the counts so results can say so.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from llm_ladder.engines.base import EngineError
from llm_ladder.engines.process import log_tail, run_logged

QUANT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S", "Q4_0",
               "Q4_1", "Q3_K_M", "Q2_K", "IQ4_NL", "IQ4_XS")  # fmt: skip
"""llama-quantize types a rung may ask for (llama-quantize --help lists more)."""


def gguf_dir(model_dir: Path) -> Path:
    return model_dir.with_name(model_dir.name + "-gguf")


def _run(cmd: list[str], log: Path) -> None:
    if (code := run_logged(cmd, log)) != 0:
        raise EngineError(f"{Path(cmd[1] if cmd[0] == sys.executable else cmd[0]).name} failed ({code}), log {log}",
                          log_tail(log))  # fmt: skip


def convert_f16(model_dir: Path, converter: Path, out: Path, log: Path) -> Path:
    partial = out.with_suffix(".partial")
    _run([sys.executable, str(converter), str(model_dir), "--outtype", "f16", "--outfile", str(partial)], log)
    return partial.rename(out)


def quantize(f16: Path, quant: str, quantizer: Path, out: Path, log: Path, matrix: Path | None = None) -> Path:
    partial = out.with_suffix(".partial")
    _run([str(quantizer), *(["--imatrix", str(matrix)] if matrix else []), str(f16), str(partial), quant], log)
    return partial.rename(out)


IMATRIX_CHUNKS = 64
"""512-token chunks of the shipped calibration text llama-imatrix reads (32k tokens: about a minute for SmolLM2
on 2 cores; llama.cpp's own guidance is a few hundred chunks of varied text for big models)."""


def importance_matrix(f16: Path, program: Path, text: Path, threads: int, log: Path) -> Path:
    """llama-imatrix's importance matrix of the F16 GGUF over `text`, made once beside it."""
    out = f16.with_name(f"imatrix-{text.stem}.gguf")
    if not out.is_file():
        partial = out.with_suffix(".partial")
        _run([str(program), "-m", str(f16), "-f", str(text), "-o", str(partial), "--output-format", "gguf",
              "-c", "512", "--chunks", str(IMATRIX_CHUNKS), "-t", str(threads), "--no-ppl"], log)  # fmt: skip
        partial.rename(out)
    return out


def gguf_variant(
    model: str,
    quant: str,
    quantizer: Callable[[], Path],
    converter: Callable[[], Path],
    notify: Callable[[str], None] = print,
    imatrix: Callable[[Path, Path], Path] | None = None,
) -> Path:
    """The GGUF of `model` (a model directory, or a .gguf file used as is) in `quant`, made if missing; the
    llama-quantize binary and the converter are looked up only when something must be made. With `imatrix`
    (F16 GGUF, log → importance matrix) the type is quantized with it, into `<TYPE>-imatrix.gguf`."""
    path = Path(model)
    if path.suffix == ".gguf" and path.is_file():
        return path
    if not (path / "config.json").is_file():
        raise EngineError(f"llama.cpp needs a local model directory or a .gguf file, not {model!r}")
    if quant not in QUANT_TYPES:
        raise EngineError(f"unknown GGUF type {quant!r} (known: {', '.join(QUANT_TYPES)})")
    folder = gguf_dir(path)
    folder.mkdir(exist_ok=True)
    log = folder / "make.log"
    f16 = folder / "F16.gguf"
    if not f16.is_file():
        notify(f"converting {path.name} to GGUF F16 (llama.cpp's convert_hf_to_gguf.py)")
        convert_f16(path, converter(), f16, log)
    if quant == "F16":
        return f16
    out = folder / f"{quant}{'-imatrix' if imatrix else ''}.gguf"
    if not out.is_file():
        matrix = imatrix(f16, log) if imatrix else None
        how = " with an importance matrix" if matrix else ""
        notify(f"quantizing {path.name} to GGUF {quant}{how} (llama-quantize)")
        quantize(f16, quant, quantizer(), out, log, matrix)
    return out


def imatrix_entries(gguf: Path) -> int | None:
    """How many tensors llama-quantize quantized with an importance matrix (`quantize.imatrix.entries_count`)."""
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("quantize.imatrix.entries_count")
    return int(field.parts[field.data[0]][0]) if field is not None else None


def tensor_types(gguf: Path) -> dict[str, int]:
    """How many tensors the file stores in each type, e.g. {'Q4_K': 92, 'Q5_0': 150, 'F32': 61}."""
    from gguf import GGUFReader

    return dict(Counter(t.tensor_type.name for t in GGUFReader(gguf).tensors).most_common())


def file_type(gguf: Path) -> str | None:
    """The file's own `general.file_type` as a llama-quantize type name (`Q4_K_M`, `F16`); None if unset."""
    from gguf import GGUFReader
    from gguf.constants import LlamaFileType

    field = GGUFReader(gguf).fields.get("general.file_type")
    if field is None:
        return None
    name = LlamaFileType(int(field.parts[field.data[0]][0])).name
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def prepended_bos(gguf: Path) -> int | None:
    """The BOS token llama.cpp puts first in every context for this model, or None when it adds none."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields

    def value(key: str) -> int | None:
        field = fields.get(key)
        return int(field.parts[field.data[0]][0]) if field is not None else None

    return value("tokenizer.ggml.bos_token_id") if value("tokenizer.ggml.add_bos_token") else None
