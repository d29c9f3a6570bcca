#!/usr/bin/env bash
# Sets up a virtual environment (if missing), installs the project with its test extra, runs all tests.
# Test files run in parallel worker processes, one file per worker at a time (pytest-xdist
# --dist loadfile): one per CPU core, at most 4 (TEST_WORKERS overrides; 0 runs them in this process).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"
WORKERS="${TEST_WORKERS:-$("$VENV/bin/python" -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}"
exec "$VENV/bin/python" -m pytest tests -q -ra -n "$WORKERS" --dist loadfile "$@"
