#!/usr/bin/env bash
# Install the Debian packages SCP needs to build and test (listed in .ci/packages.txt).
# Idempotent and quick when everything is present. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' .ci/packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
