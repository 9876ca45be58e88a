#!/usr/bin/env bash
# System packages that PyPI does not provide, installed only when missing:
#   build: node + npm (the viewer is built from the npm registry)
#   test:  the same, plus Debian's chromium for the browser tests (Playwright drives it;
#          browser downloads are not possible on these machines)
set -euo pipefail
what=${1:-test}
missing=()
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "$what" = test ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
