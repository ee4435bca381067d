# Shared helpers of the hack/kind scripts (sourced, not run).
# shellcheck shell=bash

# Repository root, whatever the caller's working directory.
ROUSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export ROUSE_ROOT

# Pinned versions of what the kind path installs.
# Knative: the release whose Go modules are knative.dev/serving and
# knative.dev/eventing v0.50.0 (the versions tests/knative-validate builds
# against): Knative 1.N ships modules v0.(N+27).0, so v0.50.0 is knative-v1.23.0.
KNATIVE_VERSION="${KNATIVE_VERSION:-knative-v1.23.0}"
# kind node image (Kubernetes version of the cluster); override with a digest-pinned image.
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.34.0}"
# Image tag of the Rouse images (the chart's appVersion).
ROUSE_TAG="${ROUSE_TAG:-0.1.0}"
ROUSE_REGISTRY="${ROUSE_REGISTRY:-ghcr.io/rouse-dev}"
# The example agents with an image ($ROUSE_REGISTRY/examples-<name>), built by images.sh
# (kind's and the node's, which source this file; an array cannot be exported).
# shellcheck disable=SC2034
ROUSE_EXAMPLES=(hello support-triage tools research-brief trip-booking)
EVENT_DISPLAY_IMAGE="${EVENT_DISPLAY_IMAGE:-gcr.io/knative-releases/knative.dev/eventing/cmd/event_display}"
export KNATIVE_VERSION KIND_NODE_IMAGE ROUSE_TAG ROUSE_REGISTRY EVENT_DISPLAY_IMAGE

log() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { printf '%s: error: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# Usage error: message, then the script's usage on stderr, exit 2.
usage_error() {
  printf '%s: %s\n' "$(basename "$0" .sh)" "$1" >&2
  usage >&2
  exit 2
}

# Fail early, naming the missing tool and where to get it.
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed (see README.md, 'Install on Kubernetes')"
  done
}

# The value of an option that takes an argument: need_value <option> <remaining-arg-count> <value>
need_value() {
  [ "$2" -ge 2 ] || usage_error "option $1 needs a value"
  [ -n "$3" ] || usage_error "option $1 needs a non-empty value"
}

# A DNS-1123 label (cluster, namespace, release names).
check_name() {
  [[ "$2" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || usage_error "$1 '$2' is not a DNS-1123 label"
}

# Poll until `$@` succeeds; after $timeout seconds log what was awaited and return 1.
wait_for() {
  local timeout="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 2
  done
}
