#!/usr/bin/env bash
# Run knative.dev/networking's KIngress conformance suite (test/conformance/ingress, at the version
# knative.dev/serving v0.50.0 pins) against kingress in the cluster of KUBECONFIG.
#
#   1. builds the suite (conformance/, `go test -c -tags e2e`) and its six test images
#      (runtime, httpproxy, timeout, retry, wsserver, grpc-ping; static Go binaries packaged by
#      conformance/ociimage.py in ko's layout as dev.local/knative-networking-test/NAME:dev),
#      each skipped when built already;
#   2. imports the images into the node's containerd (CONTAINERD_ADDRESS, default the real
#      node's socket; set IMPORT_IMAGES=0 when they are there already, e.g. on kind: `kind load`);
#   3. reaches the public listener the way the suite's --ingressendpoint expects (endpoint IP +
#      the kingress Service's NodePort) through `kubectl port-forward` on 127.0.0.1, so the
#      suite runs from the host whatever network namespace the node lives in;
#   4. runs every stable and beta test except SKIP (default: tls, as kingress has no TLS listener).
#
# Usage: KUBECONFIG=.cache/node/kubeconfig hack/node/kingress/conformance.sh [go test flags...]
#   e.g. ... conformance.sh -test.run 'TestIngressConformance/basics'
# Env: NODE_CACHE, CONTAINERD_ADDRESS, IMPORT_IMAGES, SKIP (comma list of suite test names),
#      INGRESS_CLASS, TEST_TIMEOUT (default 30m), ENVTEST_CACHE (for kubectl when none is on PATH).
# Measured on the one-node cluster (2 cores): 23 tests pass in about 3 minutes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cache="${NODE_CACHE:-$root/.cache/node}"
out="$cache/kingress-conformance"
stamps="$cache/stamps"
repo=dev.local/knative-networking-test
tag=dev
images=(runtime httpproxy timeout retry wsserver grpc-ping)
class="${INGRESS_CLASS:-rouse.ingress.networking.knative.dev}"
skip="${SKIP:-tls}"
containerd="${CONTAINERD_ADDRESS:-$cache/run/containerd/containerd.sock}"

die() {
  echo "conformance: $*" >&2
  exit 1
}
[ -n "${KUBECONFIG:-}" ] || die "set KUBECONFIG to the cluster's kubeconfig (e.g. .cache/node/kubeconfig)"
[ -f "$KUBECONFIG" ] || die "KUBECONFIG=$KUBECONFIG does not exist (is the node up? make node-up)"
# kubectl at the pinned version from `make envtest` when none is on PATH.
envtest_bin="${ENVTEST_CACHE:-$root/.cache/envtest}/bin"
command -v kubectl >/dev/null || [ ! -x "$envtest_bin/kubectl" ] || PATH="$envtest_bin:$PATH"
for tool in go kubectl python3; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH"
done
export GOFLAGS=-buildvcs=false
mkdir -p "$out/bin" "$out/images" "$stamps"

# The suite and images depend only on conformance/go.mod and go.sum (plus the Go version).
key="$(go env GOVERSION) $(cat "$here/conformance/go.mod" "$here/conformance/go.sum" "$here/conformance"/*.go "$here/conformance/ociimage.py" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamps/kingress-conformance" 2>/dev/null)" = "$key" ] && [ -x "$out/bin/ingress.test" ]; then
  echo "conformance: suite and test images already built ($key)"
else
  start=$SECONDS
  echo "conformance: building the suite and its test images"
  (cd "$here/conformance" && nice -n 10 go test -c -tags e2e -o "$out/bin/ingress.test" .)
  for name in "${images[@]}"; do
    # Static binaries: the images hold nothing but the program.
    (cd "$here/conformance" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w" \
      -o "$out/bin/$name" "knative.dev/networking/test/test_images/$name")
    python3 "$here/conformance/ociimage.py" "$out/bin/$name" "$repo/$name:$tag" "$out/images/$name.tar"
  done
  echo "$key" >"$stamps/kingress-conformance"
  echo "conformance: built in $((SECONDS - start))s"
fi

if [ "${IMPORT_IMAGES:-1}" = 1 ]; then
  [ -S "$containerd" ] || die "no containerd socket at $containerd (set CONTAINERD_ADDRESS, or IMPORT_IMAGES=0)"
  command -v ctr >/dev/null || die "'ctr' is not on PATH (Debian package containerd)"
  for name in "${images[@]}"; do
    ctr --address "$containerd" -n k8s.io images import "$out/images/$name.tar" >/dev/null
  done
  echo "conformance: imported ${#images[@]} test images into $containerd"
fi

kubectl -n knative-serving rollout status deployment/kingress --timeout=120s >/dev/null ||
  die "deployment knative-serving/kingress is not available (apply hack/node/kingress/config.yaml)"
created_ns=0
if ! kubectl get namespace serving-tests >/dev/null 2>&1; then
  kubectl create namespace serving-tests >/dev/null
  created_ns=1
fi
node_port="$(kubectl -n knative-serving get service kingress -o jsonpath='{.spec.ports[?(@.port==80)].nodePort}')"
[ -n "$node_port" ] || die "service knative-serving/kingress has no NodePort for port 80"

log="$out/port-forward.log"
kubectl -n knative-serving port-forward --address 127.0.0.1 service/kingress "$node_port:80" >"$log" 2>&1 &
forward=$!
cleanup() {
  kill "$forward" 2>/dev/null || true
  # The suite deletes what it creates; the namespace goes too when this run made it.
  [ "$created_ns" = 0 ] || kubectl delete namespace serving-tests --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$node_port") 2>/dev/null; then
    break
  fi
  kill -0 "$forward" 2>/dev/null || die "kubectl port-forward exited: $(cat "$log")"
  sleep 0.1
done

echo "conformance: running (ingress class $class, skipping: $skip)"
# Run from $out: the suite writes nothing, but keep the working directory out of the repo.
cd "$out"
"$out/bin/ingress.test" \
  -test.v -test.timeout "${TEST_TIMEOUT:-30m}" \
  --kubeconfig "$KUBECONFIG" \
  --ingressClass "$class" \
  --ingressendpoint 127.0.0.1 \
  --dockerrepo "$repo" --tag "$tag" \
  --enable-beta \
  --skip-tests "$skip" \
  "$@"
