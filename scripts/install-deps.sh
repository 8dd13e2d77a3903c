#!/usr/bin/env bash
# Installs the Debian packages Flux builds and tests with, only those missing, quietly.
# Idempotent: a second run installs nothing and prints nothing.
set -euo pipefail
packages=(libpq-dev libssl-dev liblz4-dev libsqlite3-dev)
if [[ "${FLUX_WITH_POSTGRES:-0}" == "1" ]]; then packages+=(postgresql); fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "flux: please install these packages: ${missing[*]}" >&2
    exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "flux: installing ${missing[*]} …" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
