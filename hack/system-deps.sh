#!/usr/bin/env bash
# Install the Debian packages Rouse's tests start as real servers or run as
# real tools, and those the real node is built from. Skips what is present;
# uses sudo when not root.
set -euo pipefail

# A command on PATH (or an absolute path) -> the Debian package that provides it.
declare -A want=(
  [redis-server]=redis-server
  [prometheus]=prometheus
  [promtool]=prometheus
  [shellcheck]=shellcheck
  # The real node (hack/node): container runtime, CNI, kube-proxy's tools, the API relay.
  [containerd]=containerd
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables
  [conntrack]=conntrack
  [socat]=socat
  # Images without a Docker engine (hack/node/images.sh), the pause image's static C program.
  [buildah]=buildah
  [mmdebstrap]=mmdebstrap
  [umoci]=umoci
  [gcc]=gcc
  [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev
)
missing=()
for tool in "${!want[@]}"; do
  if [[ "$tool" == /* ]]; then
    [ -e "$tool" ] || missing+=("${want[$tool]}")
  else
    command -v "$tool" >/dev/null 2>&1 || missing+=("${want[$tool]}")
  fi
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
