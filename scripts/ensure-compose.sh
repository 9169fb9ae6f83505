#!/usr/bin/env bash
# Make sure `docker-compose` (the Debian package, Compose v1) is there, for validating the compose files.
# As root on Debian it is installed when missing; elsewhere, say what to install.
set -euo pipefail
command -v docker-compose >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-compose: installing docker-compose" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
else
  echo "ensure-compose: needs docker-compose (Debian package docker-compose, or Docker's compose plugin)" >&2
  exit 1
fi
