#!/usr/bin/env bash
# Run the service with its defaults: controller + API on 127.0.0.1:8000, data in ./opeva-data.
# Does its own set-up: the virtualenv, the package, a Docker engine that answers, the examples' image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
bash scripts/ensure-docker.sh
bash scripts/build-images.sh
exec .venv/bin/opeva run "$@"
