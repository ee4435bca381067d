#!/usr/bin/env bash
# Build everything the real node needs, into .cache/node/ (NODE_CACHE), skipping what is built:
#   bin/kubelet, kube-proxy, kube-scheduler  the envtest Kubernetes wrapper module (same build cache)
#   bin/coredns                              hack/node/coredns (a minimal CoreDNS)
#   bin/<knative binaries>, manifests/       hack/node/knative/build.sh
#   bin/kingress                             hack/node/kingress/build.sh
#   images/                                  hack/node/images.sh build (buildah, no Docker engine)
# The envtest tools (etcd, kube-apiserver, kube-controller-manager, kubectl, helm) come first
# from `make envtest`. Usage: hack/node/build.sh [--force]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=/dev/null
source "$root/hack/envtest/versions.env"
export NODE_CACHE="${NODE_CACHE:-$root/.cache/node}"
bin="$NODE_CACHE/bin"
stamps="$NODE_CACHE/stamps"
force=0
[ "${1:-}" = "--force" ] && force=1
export force
mkdir -p "$bin" "$stamps"
# shellcheck source=/dev/null
source "$root/hack/lib/gobuild.sh"

command -v go >/dev/null || { echo "node-build: 'go' is not on PATH; install Go >= 1.26" >&2; exit 1; }
started=$SECONDS

kube_minor="${KUBERNETES_VERSION#v1.}"
kube_minor="${kube_minor%%.*}"
version_pkg=k8s.io/component-base/version
go_build kubernetes-node "$KUBERNETES_VERSION" "$root/hack/envtest/kubernetes" \
  "-s -w -X $version_pkg.gitVersion=$KUBERNETES_VERSION -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$kube_minor -X $version_pkg.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler

go_build coredns "$COREDNS_VERSION" "$here/coredns" "-s -w" .

again=()
[ "$force" = 1 ] && again=(--force)
bash "$here/knative/build.sh" ${again[@]+"${again[@]}"}
bash "$here/kingress/build.sh"
bash "$here/images.sh" build

echo "node-build: done in $((SECONDS - started))s; binaries in $bin, images in $NODE_CACHE/images"
