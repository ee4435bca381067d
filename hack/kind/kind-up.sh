#!/usr/bin/env bash
# Create the kind cluster for Rouse from kind-config.yaml (no-op if it exists).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--image NODE_IMAGE]

Create a kind cluster from kind-config.yaml and wait until its nodes are Ready.
Does nothing when a cluster of that name exists.

Options:
  --name NAME         kind cluster name (default: rouse)
  --image NODE_IMAGE  kind node image (default: $KIND_NODE_IMAGE)
  -h, --help          show this help
Needs: docker (a running engine), kind, kubectl.
USAGE
}

name=rouse
image="$KIND_NODE_IMAGE"
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; shift 2 ;;
    --image) need_value "$1" $# "${2:-}"; image="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
check_name "cluster name" "$name"

need docker kind kubectl
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is it running?)"

if kind get clusters 2>/dev/null | grep -qx "$name"; then
  log "cluster '$name' exists"
else
  log "creating cluster '$name' ($image)"
  kind create cluster --name "$name" --image "$image" --config "$ROUSE_ROOT/kind-config.yaml" --wait 120s
fi
kubectl --context "kind-$name" wait --for=condition=Ready nodes --all --timeout=180s
log "cluster '$name' ready (kubectl context kind-$name)"
