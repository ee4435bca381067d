#!/usr/bin/env bash
# Install or upgrade the Rouse chart in the kind cluster (images from `images`).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME | --context CTX] [--namespace NS] [--release RELEASE] [--tag TAG] [-- HELM_ARGS...]

helm upgrade --install the chart charts/rouse into namespace NS of the cluster
(kind, or the real node of 'make node-up'), with the images built by images.sh, and wait until the operator,
the parking service and Redis are available. Arguments after -- go to helm
(e.g. -- --set operator.replicas=2).

Options:
  --name NAME        act on the kind cluster NAME (context kind-NAME)
  --context CTX      act on kubeconfig context CTX (default: kubectl's current context,
                     which 'kind create cluster' and the real node's KUBECONFIG both set)
  --namespace NS     namespace of the release (default: rouse-system)
  --release RELEASE  Helm release name (default: rouse)
  --tag TAG          image tag (default: $ROUSE_TAG)
  -h, --help         show this help
Needs: helm, kubectl.
USAGE
}

name=rouse
context=""
namespace=rouse-system
release=rouse
tag="$ROUSE_TAG"
helm_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; context="kind-$2"; shift 2 ;;
    --context) need_value "$1" $# "${2:-}"; context="$2"; shift 2 ;;
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

kc=(kubectl)
helm_context=()
if [ -n "$context" ]; then
  kc+=(--context "$context")
  helm_context=(--kube-context "$context")
fi
log "cluster: context '$("${kc[@]}" config current-context 2>/dev/null || echo "$context")'"

# The operator's namespace runs only restricted workloads; say so to the API server.
"${kc[@]}" create namespace "$namespace" --dry-run=client -o yaml | "${kc[@]}" apply -f -
"${kc[@]}" label namespace "$namespace" --overwrite pod-security.kubernetes.io/enforce=restricted

helm upgrade --install "$release" "$chart" ${helm_context[@]+"${helm_context[@]}"} --namespace "$namespace" \
  --set "operator.image.tag=$tag" --set "parking.image.tag=$tag" \
  --wait --timeout 5m ${helm_args[@]+"${helm_args[@]}"}

"${kc[@]}" -n "$namespace" get deployments -l "app.kubernetes.io/instance=$release"
log "release '$release' deployed in namespace '$namespace'"
