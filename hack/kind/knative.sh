#!/usr/bin/env bash
# Install pinned Knative Serving + Kourier + Eventing + the MT channel broker
# from their release manifests, and wait until every component is available.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--version KNATIVE_VERSION]

Install Knative Serving (with the Kourier ingress) and Knative Eventing (with the
in-memory channel and the MT channel broker) into the kind cluster NAME, from
the release manifests on github.com, then wait until they are available.
Idempotent: re-running re-applies the same manifests.

Options:
  --name NAME                kind cluster name (default: rouse)
  --version KNATIVE_VERSION  Knative release tag (default: $KNATIVE_VERSION)
  -h, --help                 show this help
Needs: kubectl, and internet access to github.com.
USAGE
}

name=rouse
version="$KNATIVE_VERSION"
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; shift 2 ;;
    --version) need_value "$1" $# "${2:-}"; version="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
check_name "cluster name" "$name"
[[ "$version" =~ ^knative-v1\.[0-9]+\.[0-9]+$ ]] || usage_error "version '$version' is not a Knative release tag like knative-v1.23.0"

need kubectl
kc=(kubectl --context "kind-$name")
gh=https://github.com/knative

apply() {
  log "applying $1"
  "${kc[@]}" apply -f "$1"
}

# CRDs first, and established, before the controllers that serve them.
apply "$gh/serving/releases/download/$version/serving-crds.yaml"
apply "$gh/eventing/releases/download/$version/eventing-crds.yaml"
"${kc[@]}" wait --for=condition=Established crd --all --timeout=120s

available() {
  log "waiting for the deployments in $1"
  "${kc[@]}" -n "$1" wait --for=condition=Available deployment --all --timeout=300s
}

apply "$gh/serving/releases/download/$version/serving-core.yaml"
# Serving's webhook validates its own ConfigMaps: it must be up before they are patched.
available knative-serving
apply "$gh/net-kourier/releases/download/$version/kourier.yaml"
available kourier-system
# Route Knative Services through Kourier; skill pods keep the restricted profile.
"${kc[@]}" -n knative-serving patch configmap/config-network --type merge \
  -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
"${kc[@]}" -n knative-serving patch configmap/config-features --type merge \
  -p '{"data":{"kubernetes.podspec-securitycontext":"enabled","secure-pod-defaults":"enabled"}}'
# The Rouse images are loaded into the nodes by `kind load`, not pushed: let Knative
# run them by tag instead of resolving the tag to a digest in a registry.
"${kc[@]}" -n knative-serving patch configmap/config-deployment --type merge \
  -p '{"data":{"registries-skipping-tag-resolving":"kind.local,ko.local,dev.local,ghcr.io"}}'
# Services answer on <name>.<namespace>.127.0.0.1.sslip.io through the published NodePort.
"${kc[@]}" -n knative-serving patch configmap/config-domain --type merge \
  -p '{"data":{"127.0.0.1.sslip.io":""}}'
"${kc[@]}" -n kourier-system patch service/kourier --type strategic \
  -p '{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":31080}]}}'

apply "$gh/eventing/releases/download/$version/eventing-core.yaml"
available knative-eventing
apply "$gh/eventing/releases/download/$version/in-memory-channel.yaml"
apply "$gh/eventing/releases/download/$version/mt-channel-broker.yaml"
available knative-eventing
log "Knative $version ready in cluster '$name'"
