#!/usr/bin/env bash
# Build Knative Serving and Eventing for the one-node cluster into $NODE_CACHE
# (default <repo>/.cache/node), at the versions in hack/envtest/versions.env, from
# the Go module proxy only:
#   bin/        serving-controller serving-webhook activator autoscaler queue
#               eventing-controller eventing-webhook broker-ingress broker-filter
#               imc-controller imc-dispatcher mtchannel-broker mtping event-display
#               apiserver-receive-adapter auth-proxy
#               (names: BINARIES in assemble.py; the wrapper module is go.mod here)
#   manifests/  the YAML, from the modules' own config/ (assemble.py says what is
#               adapted for a 2-core node). Apply in this order:
#                 1. knative-serving-crds.yaml knative-eventing-crds.yaml
#                    (then wait for the CRDs to be Established)
#                 2. knative-serving.yaml knative-eventing.yaml
#               images.txt: `<image-ref> <binary-name>` per image to build
#               (ko layout: /ko-app/<binary-name>, user 65532).
#               README: the same order and what must become Available.
# The binaries are built with cgo (Go's default), so they need glibc in the image
# (the Debian bookworm base has it) and share Go's build cache with hack/envtest.
# Serving and eventing both have cmd/controller and cmd/webhook, and `go build -o DIR/`
# names binaries by the last path element, so there is one `go build` per module;
# the second reuses every shared package from the build cache.
# Each part is skipped when its stamp says it is already built at that version.
# Usage: hack/node/knative/build.sh [--force]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
# shellcheck source=/dev/null
source "$root/hack/envtest/versions.env"

cache="${NODE_CACHE:-$root/.cache/node}"
bin="$cache/bin"
manifests="$cache/manifests"
stamps="$cache/stamps"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  *)
    echo "usage: $0 [--force]" >&2
    exit 2
    ;;
esac

export GOFLAGS=-buildvcs=false
mkdir -p "$bin" "$manifests" "$stamps"

die() {
  echo "knative: $*" >&2
  exit 1
}

command -v go >/dev/null || die "'go' is not on PATH; install Go >= 1.26 (https://go.dev/dl/)"
"$python" -c 'import yaml' 2>/dev/null ||
  die "$python cannot import yaml (PyYAML); run 'make install' or set PYTHON"

# stamp_ok NAME KEY: true when NAME was made with exactly KEY.
stamp_ok() {
  [ "$force" = 0 ] && [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]
}

# digest FILE...: a short digest of the files' contents (part of a stamp key).
digest() { cat "$@" | sha256sum | cut -c1-16; }
versions="serving=$KNATIVE_SERVING_VERSION eventing=$KNATIVE_EVENTING_VERSION"

# go.mod pins the modules (its build list is also what assemble.py reads the YAML from).
for pin in "knative.dev/serving@$KNATIVE_SERVING_VERSION" "knative.dev/eventing@$KNATIVE_EVENTING_VERSION"; do
  got="$(cd "$here" && go list -m -f '{{.Path}}@{{.Version}}' "${pin%@*}")" ||
    die "go list -m ${pin%@*} failed in $here"
  [ "$got" = "$pin" ] ||
    die "$here/go.mod has $got but versions.env says $pin; run: (cd $here && go get $pin && go mod tidy)"
done

# "<import path> <binary name>" per binary.
mapfile -t binaries < <("$python" "$here/assemble.py" binaries)
[ "${#binaries[@]}" -gt 0 ] || die "assemble.py listed no binaries"

all_binaries_present() {
  local line
  for line in "${binaries[@]}"; do
    [ -x "$bin/${line#* }" ] || return 1
  done
}

# The binaries depend on the wrapper module, their names and cgo; the manifests on the
# module versions (go.sum) and assemble.py.
bin_key="$versions $(printf '%s\n' "${binaries[@]}" | digest "$here/go.mod" "$here/go.sum" -) cgo=$(go env CGO_ENABLED)"
if stamp_ok knative-bin "$bin_key" && all_binaries_present; then
  echo "knative: binaries ($versions) already built"
else
  # A private staging directory: two runs at once must not mix their outputs.
  mkdir -p "$cache/build"
  staging="$(mktemp -d "$cache/build/knative.XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  for module in serving eventing; do
    packages=()
    for line in "${binaries[@]}"; do
      path="${line% *}"
      if [[ "$path" == "knative.dev/$module/"* ]]; then packages+=("$path"); fi
    done
    echo "knative: building ${#packages[@]} $module binaries (several minutes the first time)"
    start=$SECONDS
    mkdir -p "$staging/$module"
    (cd "$here" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$staging/$module/" "${packages[@]}") ||
      die "go build of the $module binaries failed (see above)"
    echo "knative: built $module in $((SECONDS - start))s"
  done
  for line in "${binaries[@]}"; do
    path="${line% *}"
    module="${path#knative.dev/}"
    module="${module%%/*}"
    install -m 0755 "$staging/$module/${path##*/}" "$bin/${line#* }"
  done
  echo "$bin_key" >"$stamps/knative-bin"
  echo "knative: ${#binaries[@]} binaries in $bin"
fi

manifest_key="$versions $(digest "$here/go.sum" "$here/assemble.py")"
if stamp_ok knative-manifests "$manifest_key" && [ -f "$manifests/README" ]; then
  echo "knative: manifests ($versions) already in $manifests"
else
  echo "knative: assembling manifests from the modules' config/"
  "$python" "$here/assemble.py" manifests --out "$manifests" || die "assembling the manifests failed"
  echo "$manifest_key" >"$stamps/knative-manifests"
  echo "knative: manifests in $manifests (apply order: $manifests/README)"
fi
