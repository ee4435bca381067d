#!/usr/bin/env bash
# Build kingress, the KIngress implementation of the real-node tier, into $NODE_CACHE/bin/kingress
# (NODE_CACHE defaults to <repo>/.cache/node). Skipped when its stamp matches the Go version and a
# hash of go.mod, go.sum and the sources; a rebuild runs `go vet` first. Default cgo: the image
# base is Debian (glibc). hack/node/images.sh packages the binary as dev.local/rouse/kingress:dev.
# Usage: hack/node/kingress/build.sh [--force]   (or force=1 in the environment)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cache="${NODE_CACHE:-$root/.cache/node}"
bin="$cache/bin"
stamps="$cache/stamps"
force="${force:-0}"
[ "${1:-}" = "--force" ] && force=1

if ! command -v go >/dev/null; then
  echo "kingress: 'go' is not on PATH; install Go >= 1.26" >&2
  exit 1
fi
export GOFLAGS=-buildvcs=false
mkdir -p "$bin" "$stamps"

# Only this module's own files (conformance/ is a separate module).
sources="$(cd "$here" && find . -maxdepth 1 -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 |
  sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
key="$(go env GOVERSION) $sources"
if [ "$force" = 0 ] && [ -x "$bin/kingress" ] && [ "$(cat "$stamps/kingress" 2>/dev/null)" = "$key" ]; then
  echo "kingress: already built ($key)"
  exit 0
fi

echo "kingress: building (the first build compiles client-go; later ones take seconds)"
start=$SECONDS
cd "$here"
# -trimpath as the build: vet then reuses the same compiled packages (and the Knative build's).
nice -n 10 go vet -trimpath ./...
nice -n 10 go build -trimpath -ldflags "-s -w" -o "$bin/kingress.new" .
mv "$bin/kingress.new" "$bin/kingress"
echo "$key" >"$stamps/kingress"
echo "kingress: built $bin/kingress in $((SECONDS - start))s"
