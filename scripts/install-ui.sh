#!/usr/bin/env bash
# Open WebUI for `ladder ui`, in a virtual environment of its own: its exact pins (pydantic, transformers,
# fastapi) conflict with vLLM's, so it cannot share the tool's. several GB; `ladder ui` finds it there.
set -euo pipefail
venv="${LADDER_WEBUI_VENV:-$HOME/.cache/llm-ladder/webui-venv}"
python="${PYTHON:-python3}"
version="${OPEN_WEBUI_VERSION:-0.12.4}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "open-webui==$version"
"$venv/bin/open-webui" --help >/dev/null
echo "installed Open WebUI $version into $venv"
# The browser test that chats through it (tests/e2e/test_ui.py) drives Chromium with Playwright, from the tool's venv.
tool_venv="${LADDER_VENV:-$(dirname "$0")/../.venv}"
if [ -x "$tool_venv/bin/python" ]; then "$tool_venv/bin/python" -m pip install -q "playwright>=1.40"; fi
