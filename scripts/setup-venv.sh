#!/usr/bin/env bash
# Create .venv (once) and install the project into it: with the test extras when given --test, with the test and
# developer tools (ruff, mypy, import-linter, pre-commit) when given --dev.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
[ "${1:-}" = "--dev" ] && extras="[test,dev]"
.venv/bin/pip install -q -e ".${extras}"
