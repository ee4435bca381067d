# Cached `go build` of pinned tools (sourced, not run): a stamp per tool records the version and
# a hash of its wrapper module, so a second run on a warm machine skips what is already built.
# The caller sets: bin (output dir), stamps (stamp dir), force (1 = rebuild everything).
# shellcheck shell=bash disable=SC2154  # bin, stamps: set by the caller

export GOFLAGS=-buildvcs=false

# stamp_ok NAME KEY: true when NAME was built with exactly KEY.
stamp_ok() {
  [ "${force:-0}" = 0 ] && [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]
}

# key_for VERSION MODULE_DIR: the version plus a hash of the wrapper's go.mod, go.sum and sources.
key_for() {
  local sum
  sum="$(cd "$2" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 |
    sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
  echo "$1 $sum"
}

# go_build NAME VERSION MODULE_DIR LDFLAGS PACKAGE...: go build the packages into $bin/.
go_build() {
  local name="$1" version="$2" dir="$3" ldflags="$4"
  shift 4
  local key
  key="$(key_for "$version" "$dir")"
  if stamp_ok "$name" "$key"; then
    echo "build: $name $version already built"
    return
  fi
  echo "build: building $name $version (this takes a while the first time)"
  local start=$SECONDS
  if ! (cd "$dir" && nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$bin/" "$@"); then
    echo "build: building $name failed (see the Go errors above)" >&2
    return 1
  fi
  echo "$key" >"$stamps/$name"
  echo "build: built $name in $((SECONDS - start))s"
}
