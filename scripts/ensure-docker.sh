#!/usr/bin/env bash
# Make sure a Docker engine answers. As root on Debian with none answering: install docker.io and start dockerd
# (no bridge: containers get loopback only, which is what the tests want). Otherwise say exactly what to do.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<'MSG'
No Docker engine answers. Start one, then run this again:
  - Debian/Ubuntu as root:  apt-get install -y docker.io && systemctl start docker
  - elsewhere: install Docker Engine (docs.docker.com/engine/install), start it, and add your user to the
    'docker' group (then log in again) so that `docker info` works without sudo.
MSG
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: installing docker.io" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "ensure-docker: starting dockerd (log: /var/log/opeva-dockerd.log)" >&2
  nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >/var/log/opeva-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
  done
  echo "ensure-docker: dockerd did not answer within 60 s; see /var/log/opeva-dockerd.log" >&2
  exit 1
fi
