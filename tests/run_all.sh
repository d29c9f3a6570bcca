#!/usr/bin/env bash
# Sets up a virtual environment (if missing), installs the project with its test extra, runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"
exec "$VENV/bin/python" -m pytest tests -q -ra "$@"
