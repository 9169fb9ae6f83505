#!/usr/bin/env bash
# Run the whole test suite. Does its own set-up: the virtualenv with test extras, a Docker engine that answers,
# the programs the tests drive (chromium, git: scripts/ensure-tools.sh) and the locally built test images.
#   default: unit + end-to-end, then the long fault-injection variants in their short form
#   OPEVA_LONG=1: the long variants at full length
#   --fast: only the unit tests (pure logic, no Docker, a few seconds)
#   extra arguments go to pytest, e.g.  bash scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh --test
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest tests/unit -q "$@"
fi
bash scripts/ensure-docker.sh
bash scripts/ensure-tools.sh
bash scripts/build-images.sh --python
# The deploy tests' base image (debootstrap, a few minutes on first use; nothing when it exists): set-up, not a test.
if [ "$(id -u)" = 0 ]; then bash scripts/build-base-image.sh; fi
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest -m "not long" --durations=25  # the slowest tests, for whoever trims the suite next
rc=0
.venv/bin/python -m pytest -m long || rc=$?
[ "$rc" = 5 ] && rc=0  # no long tests selected is not a failure
exit "$rc"
