#!/usr/bin/env bash
# Install the tool with the CPU engine and the test tools, then run lint and the whole test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh cpu,test || exit $?
venv="${LADDER_VENV:-.venv}"
"$venv/bin/ruff" check src tests bench || exit $?
"$venv/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
fi
exit "$rc"
