#!/usr/bin/env bash
# Install the Debian packages Rouse's tests start as real servers or run as
# real tools. Skips what is present; uses sudo when not root.
set -euo pipefail

declare -A want=(
  [redis-server]=redis-server
  [prometheus]=prometheus
  [promtool]=prometheus
  [shellcheck]=shellcheck
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "system-deps: need root or sudo to install: ${pkgs[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "system-deps: installing ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
