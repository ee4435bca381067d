#!/usr/bin/env bash
# Build the Rouse images (runtime, operator, example agents) and load them
# into the kind cluster's nodes, so no registry is needed.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--tag TAG] [--no-load]

Build with docker:
  $ROUSE_REGISTRY/rouse-runtime:TAG            runtime/Dockerfile
  $ROUSE_REGISTRY/rouse-operator:TAG           operator/Dockerfile
  $ROUSE_REGISTRY/examples-hello:TAG           examples/hello/Dockerfile
  $ROUSE_REGISTRY/examples-support-triage:TAG  examples/support-triage/Dockerfile
  $ROUSE_REGISTRY/examples-tools:TAG           examples/tools/Dockerfile
  $ROUSE_REGISTRY/examples-research-brief:TAG  examples/research-brief/Dockerfile
  $ROUSE_REGISTRY/examples-trip-booking:TAG    examples/trip-booking/Dockerfile
then 'kind load docker-image' each into the cluster NAME.

Options:
  --name NAME  kind cluster name (default: rouse)
  --tag TAG    image tag (default: $ROUSE_TAG, the chart's appVersion)
  --no-load    build only, do not load into kind
  -h, --help   show this help
Needs: docker (a running engine), kind.
USAGE
}

name=rouse
tag="$ROUSE_TAG"
load=1
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; shift 2 ;;
    --tag) need_value "$1" $# "${2:-}"; tag="$2"; shift 2 ;;
    --no-load) load=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
check_name "cluster name" "$name"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || usage_error "tag '$tag' is not a valid image tag"

need docker
[ "$load" -eq 0 ] || need kind
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is it running?)"

runtime="$ROUSE_REGISTRY/rouse-runtime:$tag"
operator="$ROUSE_REGISTRY/rouse-operator:$tag"
images=("$runtime" "$operator")

log "building $runtime"
docker build -f "$ROUSE_ROOT/runtime/Dockerfile" -t "$runtime" "$ROUSE_ROOT"
log "building $operator"
docker build -f "$ROUSE_ROOT/operator/Dockerfile" -t "$operator" "$ROUSE_ROOT"
for example in "${ROUSE_EXAMPLES[@]}"; do
  image="$ROUSE_REGISTRY/examples-$example:$tag"
  log "building $image"
  docker build --build-arg "RUNTIME_IMAGE=$runtime" -t "$image" "$ROUSE_ROOT/examples/$example"
  images+=("$image")
done

if [ "$load" -eq 1 ]; then
  for image in "${images[@]}"; do
    log "loading $image into kind cluster '$name'"
    kind load docker-image --name "$name" "$image"
  done
fi
log "images ready: ${images[*]}"
