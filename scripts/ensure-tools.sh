#!/usr/bin/env bash
# The programs the test suite drives besides Docker: chromium + chromedriver (dashboard tests) and git (GitOps tests);
# scripts/build-images.sh sees to the image tools. As root on Debian, install what is missing; elsewhere say so.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v git >/dev/null 2>&1 || need+=(git)
[ "${#need[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  exit 0
fi
echo "The tests need: ${need[*]}. Install them (Debian/Ubuntu: apt-get install -y ${need[*]}) and run again." >&2
exit 1
