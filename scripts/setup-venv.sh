#!/usr/bin/env bash
# Create .venv (once) and install the project into it, with the test extras when given --test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
.venv/bin/pip install -q -e ".${extras}"
