#!/usr/bin/env bash
# Build a local Debian bookworm base image with python3, python3-venv and python3-pip, without any registry:
# debootstrap (minbase) into a temporary folder, then `docker import`. Idempotent: does nothing when the image
# exists (--force rebuilds it). About a minute on first use.
#
#   bash scripts/build-base-image.sh [--force] [IMAGE]        default IMAGE: opeva-test/base:bookworm
#   docker build --network host --build-arg BASE_IMAGE=opeva-test/base:bookworm -t opeva:local .
#
# The mirror is $DEBIAN_MIRROR (default http://deb.debian.org/debian). Needs root (debootstrap) and Docker.
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
image="${1:-opeva-test/base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  else
    echo "build-base-image: needs debootstrap (Debian package debootstrap) and root" >&2; exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "build-base-image: debootstrap needs root" >&2; exit 1
fi

root=$(mktemp -d /tmp/opeva-base.XXXXXX)
log=$(mktemp /tmp/opeva-base-debootstrap.XXXXXX.log)
trap 'rm -rf "$root"' EXIT
echo "build-base-image: debootstrap bookworm into $root (log: $log)" >&2
if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,git \
    bookworm "$root" "$mirror" >"$log" 2>&1; then
  tail -20 "$log" >&2
  echo "build-base-image: debootstrap failed; see $log" >&2
  exit 1
fi
# What an image does not need: package caches, docs, man pages, non-English locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'en*' ! -name locale.alias -exec rm -rf {} + \
  2>/dev/null || true
# Bind-mount targets Docker expects to be plain files; stale resolv.conf/hostname from the build host go.
: > "$root/etc/resolv.conf"
: > "$root/etc/hostname"
tar --numeric-owner -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c 'CMD ["python3"]' \
  -m "opeva base: debian bookworm minbase + python3, python3-venv, python3-pip (debootstrap)" \
  - "$image" >/dev/null
echo "build-base-image: built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))" >&2
