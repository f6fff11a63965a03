#!/usr/bin/env bash
# Install the Debian packages SCP needs to build and test (listed in .ci/packages.txt).
# Idempotent and quick when everything is present. Needs root (or sudo), bash and apt-get
# only: on a minbase Debian 12 it is how make, the compilers and the rest get there.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' .ci/packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "install-deps: needs a Debian system (apt-get); missing: ${missing[*]}" >&2; exit 1; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (no sudo here); missing: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
