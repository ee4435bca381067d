#!/usr/bin/env bash
# Install or upgrade the Rouse chart in the kind cluster (images from `images`).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--namespace NS] [--release RELEASE] [--tag TAG] [-- HELM_ARGS...]

helm upgrade --install the chart charts/rouse into namespace NS of the kind
cluster NAME, with the images built by images.sh, and wait until the operator,
the parking service and Redis are available. Arguments after -- go to helm
(e.g. -- --set operator.replicas=2).

Options:
  --name NAME        kind cluster name (default: rouse)
  --namespace NS     namespace of the release (default: rouse-system)
  --release RELEASE  Helm release name (default: rouse)
  --tag TAG          image tag (default: $ROUSE_TAG)
  -h, --help         show this help
Needs: helm, kubectl.
USAGE
}

name=rouse
namespace=rouse-system
release=rouse
tag="$ROUSE_TAG"
helm_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; shift 2 ;;
    --namespace) need_value "$1" $# "${2:-}"; namespace="$2"; shift 2 ;;
    --release) need_value "$1" $# "${2:-}"; release="$2"; shift 2 ;;
    --tag) need_value "$1" $# "${2:-}"; tag="$2"; shift 2 ;;
    --) shift; helm_args=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
check_name "cluster name" "$name"
check_name "namespace" "$namespace"
check_name "release" "$release"

need helm kubectl
chart="$ROUSE_ROOT/charts/rouse"
cmp -s "$ROUSE_ROOT/crds/agent.yaml" "$chart/files/agent.yaml" \
  || die "charts/rouse/files/agent.yaml differs from crds/agent.yaml: run 'make chart-crd'"

# The operator's namespace runs only restricted workloads; say so to the API server.
kubectl --context "kind-$name" create namespace "$namespace" --dry-run=client -o yaml \
  | kubectl --context "kind-$name" apply -f -
kubectl --context "kind-$name" label namespace "$namespace" --overwrite \
  pod-security.kubernetes.io/enforce=restricted

helm upgrade --install "$release" "$chart" \
  --kube-context "kind-$name" --namespace "$namespace" \
  --set "operator.image.tag=$tag" --set "parking.image.tag=$tag" \
  --wait --timeout 5m ${helm_args[@]+"${helm_args[@]}"}

kubectl --context "kind-$name" -n "$namespace" get deployments -l "app.kubernetes.io/instance=$release"
log "release '$release' deployed in namespace '$namespace'"
