#!/usr/bin/env bash
# The static checks CI runs before the tests, and pre-commit runs on every commit: lint, format, import direction, types.
# Usage: bash scripts/check.sh        (sets up .venv with the dev tools first)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh --dev >/dev/null
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/mypy
