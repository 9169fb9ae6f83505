#!/usr/bin/env bash
# Build the local images the tests and examples use, when they are missing. No registry is needed:
#   opeva-test/busybox:1        busybox-static imported as an image (a second)
#   opeva-test/python:3.11      debootstrap minbase + python3 (about a minute), only with --python
#   busybox:1.36                the examples' image: a local tag of opeva-test/busybox:1 (no registry)
#   opeva-test/hostile:1        busybox + a static renameat2 swapper (tests/e2e/hostile), for the attack tests
set -euo pipefail

need_python=0
[ "${1:-}" = "--python" ] && need_python=1

have() { docker image inspect "$1" >/dev/null 2>&1; }

ensure_pkg() {  # ensure_pkg COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "build-images: needs '$1' (Debian package $2)" >&2; exit 1
  fi
}

busybox_bin() {
  for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ] && file -L "$b" 2>/dev/null | grep -q "statically linked"; then echo "$b"; return; fi
  done
  ensure_pkg busybox busybox-static
  if ! file -L /bin/busybox 2>/dev/null | grep -q "statically linked"; then
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  fi
  echo /bin/busybox
}

if ! have opeva-test/busybox:1; then
  command -v file >/dev/null 2>&1 || ensure_pkg file file
  bb=$(busybox_bin)
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp "$bb" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' \
    -m "opeva test image: busybox-static" - opeva-test/busybox:1 >/dev/null
  rm -rf "$root"
  echo "build-images: built opeva-test/busybox:1" >&2
fi

if ! have opeva-test/hostile:1; then
  ensure_pkg gcc gcc
  root=$(mktemp -d)
  src="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/hostile/swapper.c"
  if ! gcc -static -O2 -o "$root/swapper" "$src" 2>/dev/null; then
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-dev >/dev/null
    gcc -static -O2 -o "$root/swapper" "$src"
  fi
  cid=$(docker create opeva-test/busybox:1 true)
  mkdir "$root/fs"
  docker export "$cid" | tar -C "$root/fs" -x
  docker rm "$cid" >/dev/null
  mv "$root/swapper" "$root/fs/bin/swapper"
  tar -C "$root/fs" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' \
    -m "opeva test image: busybox + static swapper (attack tests)" - opeva-test/hostile:1 >/dev/null
  rm -rf "$root"
  echo "build-images: built opeva-test/hostile:1" >&2
fi

# Tags that are not `latest`, so a job's default pull policy is IfNotPresent and no registry is ever asked.
# busybox:1.36 (the examples' image) and the older opeva-test/busybox:latest name are local tags of the same image.
have busybox:1.36 || docker tag opeva-test/busybox:1 busybox:1.36
have opeva-test/busybox:latest || docker tag opeva-test/busybox:1 opeva-test/busybox:latest

if [ "$need_python" = 1 ] && ! have opeva-test/python:3.11; then
  ensure_pkg debootstrap debootstrap
  root=$(mktemp -d)
  if ! debootstrap --variant=minbase --include=python3 bookworm "$root" >/tmp/opeva-debootstrap.log 2>&1; then
    echo "build-images: debootstrap failed; the end of /tmp/opeva-debootstrap.log:" >&2
    tail -20 /tmp/opeva-debootstrap.log >&2
    exit 1
  fi
  rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
  tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'CMD ["python3"]' \
    -m "opeva test image: debian bookworm minbase + python3" - opeva-test/python:3.11 >/dev/null
  rm -rf "$root"
  echo "build-images: built opeva-test/python:3.11" >&2
fi
