#!/usr/bin/env bash
# Build every image the one-node cluster (hack/node) runs, without a Docker engine, into
# $NODE_CACHE/images/ as OCI archives, and load them into the node's containerd.
# An image is rebuilt only when its content key changes (see `key_*`), so a warm run is quick.
set -euo pipefail
# One collation and number format: the content keys hash sorted file lists, `since` reads floats.
export LC_ALL=C
# Image names, tag and log/die/usage_error/need_value are the kind path's (hack/kind/lib.sh):
# both paths build the same Dockerfiles under the same names, so the chart runs unchanged.
# shellcheck source=SCRIPTDIR/../kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../kind/lib.sh"

NODE_CACHE="${NODE_CACHE:-$ROUSE_ROOT/.cache/node}"
IMAGES_DIR="$NODE_CACHE/images"
# The Go binaries' images share one OCI layout (a directory), so one copy of the base.
BINARIES_LAYOUT="$IMAGES_DIR/binaries"
BASE_IMAGE="dev.local/debian-python:bookworm"
PAUSE_IMAGE="dev.local/pause:3.10"
PAUSE_SOURCE="$ROUSE_ROOT/hack/node/pause/pause.c"
RUNTIME_IMAGE="$ROUSE_REGISTRY/rouse-runtime:$ROUSE_TAG"
# The chart's Redis (docker.io/library/redis) cannot be pulled here: Debian's redis-server
# instead; deploy with --set redis.image.repository=dev.local/redis,redis.image.tag=7.0-bookworm.
REDIS_IMAGE="dev.local/redis:7.0-bookworm"
REDIS_PACKAGES=(redis-server redis-tools)
# Prometheus for the operator's policy loop on the node (hack/node/prometheus.yaml): Debian's.
PROMETHEUS_IMAGE="dev.local/prometheus:2.42-bookworm"
PROMETHEUS_PACKAGES=(prometheus)
# The host's CA bundle, mounted read-only into each build: package traffic may go through a
# TLS-intercepting proxy whose CA only the host trusts. Debian's pip reads this very path.
CA_BUNDLE="${NODE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
# Go binaries not listed in the Knative helper's images.txt: "<image-ref> <binary>".
EXTRA_BINARY_IMAGES=(
  "dev.local/rouse/kingress:dev kingress"
  "dev.local/coredns:v1.15.0 coredns"
)
# The Debian base: python3 for the Rouse Dockerfiles, glibc, CA certificates and nsswitch.conf
# for the cgo-built Go binaries. `python` too: the operator's CMD and the chart call it.
MMDEBSTRAP_ARGS=(
  --variant=minbase --mode=root --format=tar
  '--include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates'
  # merged /usr by symlinks (as debian:bookworm), instead of the usrmerge package and its perl
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  # no fsync per file: the tree is tarred at the end anyway (halves the time here)
  --dpkgopt=force-unsafe-io
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
)
BASE_ENV=(
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  LANG=C.UTF-8
  # Debian's pip follows PEP 668; an image is the environment, so pip may install into it.
  PIP_BREAK_SYSTEM_PACKAGES=1
)
# Layers are zstd-compressed: a third of gzip's push time and containerd 1.6 unpacks them.
PUSH_ARGS=(--quiet --compression-format zstd)

usage() {
  cat <<USAGE
Usage: $(basename "$0") COMMAND [OPTIONS]

Build, without a Docker engine, the images the one-node cluster runs, as OCI archives in
\$NODE_CACHE/images/ (NODE_CACHE defaults to <repo>/.cache/node; the Go binaries' images share
one OCI layout, images/binaries/), and load them into its containerd. An image is rebuilt only
when its content key changes: the files its Dockerfile copies, its binary's sha256, its base.

Commands:
  build    build what is missing or changed:
             $BASE_IMAGE  mmdebstrap minbase + python3, pip, venv, CA certificates
             $RUNTIME_IMAGE, rouse-operator, examples-hello, examples-support-triage,
                 examples-tools, examples-research-brief, examples-trip-booking
                 from runtime/, operator/, examples/*/Dockerfile, unmodified (buildah bud)
             each "<image-ref> <binary>" of \$NODE_CACHE/manifests/images.txt, and
             ${EXTRA_BINARY_IMAGES[*]%% *}:
                 \$NODE_CACHE/bin/<binary> at /ko-app/<binary> on the Debian base, user 65532
                 (ko's layout, as Knative's release images; added with umoci)
             $PAUSE_IMAGE  hack/node/pause/pause.c, static, in a scratch image
             $REDIS_IMAGE  Debian's ${REDIS_PACKAGES[*]} on the Debian base, user 999
             $PROMETHEUS_IMAGE  Debian's ${PROMETHEUS_PACKAGES[*]} on the Debian base, user 65534
  load     import every archive into containerd (namespace k8s.io), skipping images already
           there with the same digest
  plan     print "<built|stale|missing> <image-ref> <archive> <content key>" per image

Options:
  --address SOCKET  containerd socket (load; default \$NODE_CACHE/run/containerd/containerd.sock)
  --allow-missing   skip, with a message, images whose binary or archive does not exist yet
                    (default: fail naming them)
  --force           build: rebuild everything
  -h, --help        show this help
build needs root and buildah, mmdebstrap, umoci, python3, gcc, libc6-dev (installed with
apt-get when missing); load needs ctr (Debian package containerd).
USAGE
}

# ---- small helpers ---------------------------------------------------------------------------

# Seconds since an $EPOCHREALTIME value, one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

sha256_of() { sha256sum | cut -d' ' -f1; }

size_of() { du -sm "$1" | awk '{ print $1 " MB" }'; }

# Where an image's files start: <stem>.key holds the content key it was built from, <stem>.digest
# its manifest digest, <stem>.tar its archive (but the binaries' layout holds all Go binary
# images). The stem is the ref with '/', ':' and '@' as '_'.
stem_of() { printf '%s/%s' "$IMAGES_DIR" "$(printf '%s' "$1" | tr '/:@' '___')"; }

is_binary_image() { awk -v ref="$1" '$1 == ref { found = 1 } END { exit !found }' <<<"$BINARY_IMAGES"; }

archive_of() {
  if is_binary_image "$1"; then
    printf '%s' "$BINARIES_LAYOUT"
  else
    printf '%s.tar' "$(stem_of "$1")"
  fi
}

# buildah on its own storage under NODE_CACHE: nothing shared with the host's containers.
bah() {
  buildah --root "$NODE_CACHE/buildah/storage" --runroot "$NODE_CACHE/buildah/run" \
    --storage-driver overlay "$@"
}

# Install the Debian packages of missing tools: need_packages tool=package...
need_packages() {
  local pair missing=()
  for pair in "$@"; do
    if [[ "${pair%%=*}" == /* ]]; then
      [ -e "${pair%%=*}" ] || missing+=("${pair#*=}")
    else
      command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages ${missing[*]}: install them (apt-get install) or run as root"
  log "installing Debian packages: ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# Run a step with its output in a log file; on failure show the log's tail and stop.
logged() {
  local logfile="$1"
  shift
  if ! "$@" >"$logfile" 2>&1; then
    tail -n 40 "$logfile" >&2
    die "failed: $* (whole log: $logfile)"
  fi
}

# The apt sources the base is built from: this machine's Debian sources (deb822 or one-line).
apt_sources() {
  local file
  for file in "${NODE_APT_SOURCES:-}" /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -n "$file" ] && [ -s "$file" ] && grep -Eq '^[[:space:]]*(deb|Types:)' "$file"; then
      printf '%s\n' "$file"
      return 0
    fi
  done
  die "no Debian apt sources found (set NODE_APT_SOURCES to a sources.list or .sources file)"
}

# ---- the plan: which images, from what ------------------------------------------------------

# Lines "<image-ref> <binary>" of images.txt and EXTRA_BINARY_IMAGES, checked; comments and
# blank lines skipped. A missing images.txt is reported by binary_images_missing. Run it as
# BINARY_IMAGES="$(binary_image_lines)" so that a bad line stops the script.
BINARY_IMAGES=""
binary_image_lines() {
  local manifest="$NODE_CACHE/manifests/images.txt" line n=0 ref binary rest
  {
    [ -f "$manifest" ] && cat "$manifest"
    printf '%s\n' "${EXTRA_BINARY_IMAGES[@]}"
  } | while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line%%#*}"
    read -r ref binary rest <<<"$line" || true
    [ -z "${ref:-}" ] && continue
    if [ -z "${binary:-}" ] || [ -n "${rest:-}" ]; then
      die "$manifest line $n: expected '<image-ref> <binary>', got '$line'"
    fi
    # A dotted registry: go-containerregistry reads an undotted one as a Docker Hub path.
    [[ "$ref" =~ ^[a-z0-9-]+(\.[a-z0-9-]+)+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$ ]] ||
      die "$manifest line $n: '$ref' is not a <registry.domain>/<path>[:<tag>] image ref"
    # No tag means :latest, the name containerd and the kubelet give it.
    [[ "${ref##*/}" == *:* ]] || ref="$ref:latest"
    [[ "$binary" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] ||
      die "$manifest line $n: '$binary' is not a binary file name"
    printf '%s %s\n' "$ref" "$binary"
  done
}

# Dockerfile images: "<ref> <Dockerfile> <context> <parent ref> <build-arg>", as hack/kind/images.sh.
dockerfile_images() {
  local example
  printf '%s %s %s %s %s\n' \
    "$RUNTIME_IMAGE" runtime/Dockerfile . "$BASE_IMAGE" "PYTHON_IMAGE=$BASE_IMAGE" \
    "$ROUSE_REGISTRY/rouse-operator:$ROUSE_TAG" operator/Dockerfile . "$BASE_IMAGE" "PYTHON_IMAGE=$BASE_IMAGE"
  for example in "${ROUSE_EXAMPLES[@]}"; do
    printf '%s %s %s %s %s\n' "$ROUSE_REGISTRY/examples-$example:$ROUSE_TAG" \
      "examples/$example/Dockerfile" "examples/$example" "$RUNTIME_IMAGE" "RUNTIME_IMAGE=$RUNTIME_IMAGE"
  done
}

# ---- content keys: what an image is built from ----------------------------------------------

declare -A KEYS=()

key_base() {
  local sources
  sources="$(apt_sources)"
  {
    echo "recipe base 1"
    mmdebstrap --version
    printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" "${BASE_ENV[@]}"
    cat "$sources"
  } | sha256_of
}

# The source paths of a Dockerfile's COPY/ADD lines that read the build context.
copy_sources() {
  local dockerfile="$1" line words word
  while IFS= read -r line; do
    read -r -a words <<<"$line"
    case "${words[1]:-}" in --from=*) continue ;; '[') die "$dockerfile: JSON-form COPY is not supported" ;; esac
    for word in "${words[@]:1:${#words[@]}-2}"; do
      [[ "$word" == --* ]] || printf '%s\n' "$word"
    done
  done < <(grep -Ei '^[[:space:]]*(COPY|ADD)[[:space:]]' "$dockerfile")
}

# sha256 of the files under the given paths (relative to the repository): the files git would
# track there (so caches and build output do not count), or every file without git.
files_key() {
  (
    cd "$ROUSE_ROOT"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
      git ls-files -z -co --exclude-standard --deduplicate -- "$@"
    else
      find "$@" -type f -not -path '*/__pycache__/*' -print0
    fi | sort -z | while IFS= read -r -d '' file; do
      [ -f "$file" ] && sha256sum -- "$file"
    done
  ) | sha256_of
}

key_dockerfile() {
  local dockerfile="$1" context="$2" parent="$3" arg="$4" copied sources=() source
  copied="$(copy_sources "$ROUSE_ROOT/$dockerfile")"
  while IFS= read -r source; do
    [ -z "$source" ] || sources+=("$context/${source%/}")
  done <<<"$copied"
  {
    echo "recipe dockerfile 1 $arg"
    buildah --version
    echo "${KEYS[$parent]}"
    files_key "$dockerfile" ${sources[@]+"${sources[@]}"}
  } | sha256_of
}

key_binary() {
  { echo "recipe ko 1 ${KEYS[$BASE_IMAGE]}"; sha256_of <"$1"; } | sha256_of
}

# An image of Debian packages: key_packages <name> <package>...
key_packages() {
  local name="$1"
  shift
  { echo "recipe $name 1 ${KEYS[$BASE_IMAGE]}"; printf '%s\n' "$@"; } | sha256_of
}

key_pause() {
  { echo "recipe pause 1"; gcc --version | head -n 1; cat "$PAUSE_SOURCE"; } | sha256_of
}

# ---- builders: each leaves the image <ref> in buildah's storage ------------------------------

build_base() {
  local ref="$1" work tar container env
  work="$(mktemp -d "$NODE_CACHE/tmp/base.XXXXXX")"
  tar="$work/rootfs.tar"
  log "  mmdebstrap bookworm from $(apt_sources) (log: $NODE_CACHE/logs/images-base.log)"
  logged "$NODE_CACHE/logs/images-base.log" \
    mmdebstrap "${MMDEBSTRAP_ARGS[@]}" bookworm "$tar" "$(apt_sources)"
  container="$(bah from --quiet scratch)"
  bah add --quiet "$container" "$tar" / >/dev/null
  rm -rf "$work"
  local config=()
  for env in "${BASE_ENV[@]}"; do config+=(--env "$env"); done
  bah config "${config[@]}" "$container"
  bah commit --quiet --rm "$container" "$ref" >/dev/null
}

build_dockerfile() {
  local ref="$1" dockerfile="$2" context="$3" parent="$4" arg="$5" logfile
  ensure_local "$parent"
  logfile="$NODE_CACHE/logs/images-$(basename "$(stem_of "$ref")").log"
  log "  buildah bud -f $dockerfile $context --build-arg $arg (log: $logfile)"
  logged "$logfile" bah bud --pull=false --network host --isolation chroot \
    -v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro" \
    --build-arg "$arg" -f "$ROUSE_ROOT/$dockerfile" -t "$ref" "$ROUSE_ROOT/$context"
}

# Debian packages on the Debian base, run as <uid> in its own writable <dir>:
# build_packages <ref> <name> <uid> <dir> <port> <cmd JSON> <package>...
build_packages() {
  local ref="$1" name="$2" uid="$3" dir="$4" port="$5" cmd="$6" container
  local logfile="$NODE_CACHE/logs/images-$name.log"
  shift 6
  ensure_local "$BASE_IMAGE"
  container="$(bah from --quiet --pull=false "$BASE_IMAGE")"
  log "  apt-get install $* (log: $logfile)"
  # shellcheck disable=SC2016  # the script runs inside the container; its arguments follow it
  logged "$logfile" bah run --isolation chroot --network host \
    -v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro" "$container" -- sh -euc '
      uid="$1" dir="$2"
      shift 2
      apt-get update
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
      rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
      mkdir -p "$dir" && chown "$uid:$uid" "$dir"' sh "$uid" "$dir" "$@"
  bah config --cmd "$cmd" --user "$uid:$uid" --workingdir "$dir" --port "$port" "$container"
  bah commit --quiet --rm "$container" "$ref" >/dev/null
}

# As the official image for the chart: redis-server and redis-cli on PATH, uid 999, /data.
build_redis() {
  build_packages "$1" redis 999 /data 6379 '["redis-server"]' "${REDIS_PACKAGES[@]}"
}

# As prom/prometheus: uid 65534 (nobody), data in /prometheus, the config a mounted file.
build_prometheus() {
  build_packages "$1" prometheus 65534 /prometheus 9090 \
    '["prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
    "${PROMETHEUS_PACKAGES[@]}"
}

build_pause() {
  local ref="$1" stage container
  stage="$(mktemp -d "$NODE_CACHE/tmp/pause.XXXXXX")"
  gcc -static -Os -Wall -Wextra -Werror -o "$stage/pause" "$PAUSE_SOURCE"
  strip "$stage/pause"
  container="$(bah from --quiet scratch)"
  bah copy --quiet "$container" "$stage/pause" /pause >/dev/null
  rm -rf "$stage"
  # As registry.k8s.io/pause: its own non-root user, no files to write.
  bah config --entrypoint '["/pause"]' --user 65535:65535 "$container"
  bah commit --quiet --rm "$container" "$ref" >/dev/null
}

# ---- build: one image, skipped when its archive holds the same content key -------------------

FORCE=0
BUILT=()
UP_TO_DATE=()

# A parent image in buildah's storage, restored from its archive if the storage lost it.
ensure_local() {
  local ref="$1" archive
  bah inspect --type image "$ref" >/dev/null 2>&1 && return 0
  archive="$(archive_of "$ref")"
  log "  restoring $ref from $archive into buildah's storage"
  bah pull --quiet "oci-archive:$archive" >/dev/null
  bah inspect --type image "$ref" >/dev/null 2>&1 ||
    die "$archive does not hold $ref: delete it and build again"
}

# Whether the archive of <ref> exists and was built from the current content key.
is_current() {
  local stem
  stem="$(stem_of "$1")"
  [ -e "$(archive_of "$1")" ] && [ -f "$stem.digest" ] &&
    [ "$(cat "$stem.key" 2>/dev/null)" = "${KEYS[$1]}" ]
}

# build_image <ref> <builder> [args...] runs `<builder> <ref> [args...]`; KEYS[ref] must be set.
build_image() {
  local ref="$1" builder="$2" archive stem key started
  shift 2
  archive="$(archive_of "$ref")"
  stem="$(stem_of "$ref")"
  key="${KEYS[$ref]}"
  if [ "$FORCE" -eq 0 ] && is_current "$ref"; then
    UP_TO_DATE+=("$ref")
    return 0
  fi
  log "$ref: building"
  started="$EPOCHREALTIME"
  "$builder" "$ref" "$@"
  rm -f "$stem.key"
  bah push "${PUSH_ARGS[@]}" --digestfile "$stem.digest" "$ref" "oci-archive:$archive.tmp:$ref"
  mv "$archive.tmp" "$archive"
  printf '%s\n' "$key" >"$stem.key"
  BUILT+=("$ref")
  log "$ref: built in $(since "$started"), archive $(size_of "$archive")"
}

# ko's layout (as Knative's release images): /ko-app/<binary>, KO_DATA_PATH=/var/run/ko, user
# 65532, on the Debian base (the binaries are built with cgo: glibc; CA certificates, nsswitch).
# umoci adds the one layer in an OCI layout that holds the base once: about 1.7 s an image, where
# buildah from/copy/commit/push took about 5.5 s and wrote a copy of the base per archive.
build_binaries() {
  local ref binary digest item tags started="$EPOCHREALTIME" todo=()
  tags="$(umoci ls --layout "$BINARIES_LAYOUT" 2>/dev/null || true)"
  while read -r ref binary; do
    if [ -z "$ref" ] || [ ! -f "$NODE_CACHE/bin/$binary" ]; then
      continue
    elif [ "$FORCE" -eq 0 ] && is_current "$ref" && grep -qxF "$ref" <<<"$tags"; then
      UP_TO_DATE+=("$ref")
    else
      todo+=("$ref $binary")
    fi
  done <<<"$BINARY_IMAGES"
  [ ${#todo[@]} -gt 0 ] || return 0

  log "Go binary images: building ${#todo[@]} into $BINARIES_LAYOUT"
  # The base keeps its tag in the layout (same digest as its own archive), pushed when it changed.
  if [ "$(layout_digests | awk -v ref="$BASE_IMAGE" '$1 == ref { print $2 }')" != \
    "$(cat "$(stem_of "$BASE_IMAGE").digest")" ]; then
    ensure_local "$BASE_IMAGE"
    bah push "${PUSH_ARGS[@]}" "$BASE_IMAGE" "oci:$BINARIES_LAYOUT:$BASE_IMAGE"
  fi
  for item in "${todo[@]}"; do
    read -r ref binary <<<"$item"
    add_binary_image "$ref" "$binary"
  done
  # The layout keeps the planned images only: binaries dropped from images.txt go.
  while read -r ref; do
    if [ -n "$ref" ] && [ "$ref" != "$BASE_IMAGE" ] && ! is_binary_image "$ref"; then
      umoci rm --image "$BINARIES_LAYOUT:$ref"
    fi
  done < <(umoci ls --layout "$BINARIES_LAYOUT")
  umoci gc --layout "$BINARIES_LAYOUT"
  while read -r ref digest; do
    if is_binary_image "$ref"; then printf '%s\n' "$digest" >"$(stem_of "$ref").digest"; fi
  done < <(layout_digests)
  for item in "${todo[@]}"; do
    read -r ref binary <<<"$item"
    printf '%s\n' "${KEYS[$ref]}" >"$(stem_of "$ref").key"
    BUILT+=("$ref")
  done
  log "Go binary images: ${#todo[@]} built in $(since "$started"), $(size_of "$BINARIES_LAYOUT") for all"
}

add_binary_image() {
  local ref="$1" binary="$2" stage started="$EPOCHREALTIME"
  rm -f "$(stem_of "$ref").key"
  stage="$(mktemp -d "$NODE_CACHE/tmp/ko.XXXXXX")"
  # Inserted at /: the stage is the root directory's entry in the layer.
  chmod 0755 "$stage"
  mkdir -p "$stage/ko-app" "$stage/run/ko"
  cp "$NODE_CACHE/bin/$binary" "$stage/ko-app/$binary"
  chmod 0755 "$stage/ko-app/$binary"
  # /var/run is /run in Debian.
  umoci insert --image "$BINARIES_LAYOUT:$BASE_IMAGE" --tag "$ref" \
    --history.created_by "hack/node/images.sh: /ko-app/$binary" "$stage" /
  rm -rf "$stage"
  umoci config --image "$BINARIES_LAYOUT:$ref" --no-history --config.entrypoint "/ko-app/$binary" \
    --config.user 65532:65532 --config.workingdir / --config.env KO_DATA_PATH=/var/run/ko
  log "$ref: built in $(since "$started")"
}

# "<ref> <manifest digest>" of every image in the binaries' layout, from its index.json.
layout_digests() {
  [ -f "$BINARIES_LAYOUT/index.json" ] || return 0
  python3 -c '
import json, sys
for m in json.load(open(sys.argv[1]))["manifests"]:
    print(m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])
' "$BINARIES_LAYOUT/index.json"
}

# The binary images whose binary (or images.txt itself) is missing, one per line.
binary_images_missing() {
  local ref binary
  [ -f "$NODE_CACHE/manifests/images.txt" ] ||
    echo "Knative images: $NODE_CACHE/manifests/images.txt (written by hack/node/knative/build.sh)"
  while read -r ref binary; do
    if [ -n "$ref" ] && [ ! -f "$NODE_CACHE/bin/$binary" ]; then
      echo "$ref: $NODE_CACHE/bin/$binary"
    fi
  done <<<"$BINARY_IMAGES"
}

# Fail, or with --allow-missing log, naming what is missing: report_missing <what> <lines>.
report_missing() {
  [ -z "$2" ] && return 0
  if [ "$ALLOW_MISSING" -eq 1 ]; then
    log "skipping images whose $1 does not exist yet:"
    printf '%s\n' "$2" | sed 's/^/  /' >&2
  else
    die "these images' $1 does not exist yet (pass --allow-missing to skip them):
$(printf '%s\n' "$2" | sed 's/^/  /')"
  fi
}

compute_keys() {
  local ref dockerfile context parent arg binary
  KEYS[$BASE_IMAGE]="$(key_base)"
  KEYS[$PAUSE_IMAGE]="$(key_pause)"
  KEYS[$REDIS_IMAGE]="$(key_packages redis "${REDIS_PACKAGES[@]}")"
  KEYS[$PROMETHEUS_IMAGE]="$(key_packages prometheus "${PROMETHEUS_PACKAGES[@]}")"
  while read -r ref dockerfile context parent arg; do
    KEYS[$ref]="$(key_dockerfile "$dockerfile" "$context" "$parent" "$arg")"
  done < <(dockerfile_images)
  while read -r ref binary; do
    if [ -n "$ref" ] && [ -f "$NODE_CACHE/bin/$binary" ]; then
      KEYS[$ref]="$(key_binary "$NODE_CACHE/bin/$binary")"
    fi
  done <<<"$BINARY_IMAGES"
}

cmd_build() {
  local started="$EPOCHREALTIME" ref dockerfile context parent arg binary missing
  missing="$(binary_images_missing)"
  report_missing "binary" "$missing"
  [ "$(id -u)" -eq 0 ] || die "build needs root (buildah's overlay storage, mmdebstrap --mode=root)"
  need_packages buildah=buildah mmdebstrap=mmdebstrap umoci=umoci python3=python3 gcc=gcc \
    /usr/lib/x86_64-linux-gnu/libc.a=libc6-dev
  [ -r "$CA_BUNDLE" ] || die "CA bundle $CA_BUNDLE not found (set NODE_CA_BUNDLE)"
  mkdir -p "$IMAGES_DIR" "$NODE_CACHE/tmp" "$NODE_CACHE/logs"
  exec 9>"$IMAGES_DIR/.lock"
  flock -w 3600 9 || die "another images.sh holds $IMAGES_DIR/.lock"
  compute_keys

  build_image "$BASE_IMAGE" build_base
  build_image "$PAUSE_IMAGE" build_pause
  build_image "$REDIS_IMAGE" build_redis
  build_image "$PROMETHEUS_IMAGE" build_prometheus
  while read -r ref dockerfile context parent arg; do
    build_image "$ref" build_dockerfile "$dockerfile" "$context" "$parent" "$arg"
  done < <(dockerfile_images)
  build_binaries

  prune_unplanned
  log "built ${#BUILT[@]}, up to date ${#UP_TO_DATE[@]}, in $(since "$started"); archives in $IMAGES_DIR ($(size_of "$IMAGES_DIR"))"
}

# What no planned image needs would only take disk space: delete it. Archives, keys and digests
# of images no longer planned (a binary dropped from images.txt, a Go binary image from before
# the shared layout), and in buildah's own storage every image but the planned ones built there.
prune_unplanned() {
  local ref file stem
  local -A planned=() in_storage=()
  while read -r ref; do
    stem="$(basename "$(stem_of "$ref")")"
    planned[$stem.tar]=1 planned[$stem.key]=1 planned[$stem.digest]=1
    is_binary_image "$ref" || in_storage[$ref]=1
  done < <(all_refs)
  while read -r ref; do
    if [ -z "${in_storage[$ref]:-}" ]; then bah rmi "$ref" >/dev/null; fi
  done < <(bah images --format '{{.Name}}:{{.Tag}}' | grep -v '<none>')
  # Images replaced by a rebuild are dangling now.
  bah rmi --prune >/dev/null 2>&1 || true
  for file in "$IMAGES_DIR"/*.tar "$IMAGES_DIR"/*.key "$IMAGES_DIR"/*.digest "$IMAGES_DIR"/*.tmp; do
    if [ -f "$file" ] && [ -z "${planned[$(basename "$file")]:-}" ]; then
      log "deleting $file (no planned image has it)"
      rm -f "$file"
    fi
  done
}

# ---- plan and load ---------------------------------------------------------------------------

# Every image ref the cluster needs, in build order.
all_refs() {
  local ref rest
  printf '%s\n' "$BASE_IMAGE" "$PAUSE_IMAGE" "$REDIS_IMAGE" "$PROMETHEUS_IMAGE"
  while read -r ref rest; do echo "$ref"; done < <(dockerfile_images)
  while read -r ref rest; do
    if [ -n "$ref" ]; then echo "$ref"; fi
  done <<<"$BINARY_IMAGES"
}

# One line per image: "<built|stale|missing> <ref> <archive> <content key>".
cmd_plan() {
  local ref state manifest="$NODE_CACHE/manifests/images.txt"
  if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
    die "plan computes content keys with buildah and mmdebstrap: run '$0 build' once, or install them"
  fi
  compute_keys
  [ -f "$manifest" ] || printf 'missing %s %s -\n' "knative-images" "$manifest"
  while read -r ref; do
    if [ -z "${KEYS[$ref]:-}" ]; then
      state=missing
    elif is_current "$ref"; then
      state=built
    else
      state=stale
    fi
    printf '%s %s %s %s\n' "$state" "$ref" "$(archive_of "$ref")" "${KEYS[$ref]:--}"
  done < <(all_refs)
}

# The digest of each image in containerd's k8s.io namespace, as "<ref> <digest>" lines.
containerd_digests() { "${CTR[@]}" images ls | awk 'NR > 1 { print $1, $3 }'; }

cmd_load() {
  local address="$1" started="$EPOCHREALTIME" ref archive one stem missing="" present=0
  local -A have=() imports=()
  need ctr
  [ -S "$address" ] || die "no containerd socket at $address (is the node's containerd running?)"
  CTR=(ctr --address "$address" --namespace k8s.io)
  "${CTR[@]}" version >/dev/null 2>&1 || die "containerd at $address does not answer"
  # Not while a build rewrites the archives.
  mkdir -p "$IMAGES_DIR"
  exec 9>>"$IMAGES_DIR/.lock"
  flock -s -w 3600 9 || die "a build holds $IMAGES_DIR/.lock"
  while read -r ref; do
    archive="$(archive_of "$ref")"
    [ -e "$archive" ] && [ -f "$(stem_of "$ref").digest" ] || missing+="$ref: not built"$'\n'
  done < <(all_refs)
  report_missing "archive" "${missing%$'\n'}"

  while read -r ref one; do have[$ref]="$one"; done < <(containerd_digests)
  while read -r ref; do
    stem="$(stem_of "$ref")"
    [ -f "$stem.digest" ] || continue
    if [ "${have[$ref]:-}" = "$(cat "$stem.digest")" ]; then
      present=$((present + 1))
    else
      imports[$(archive_of "$ref")]=1
    fi
  done < <(all_refs)
  for archive in "${!imports[@]}"; do
    one="$EPOCHREALTIME"
    if [ -d "$archive" ]; then
      tar -C "$archive" -cf - oci-layout index.json blobs | "${CTR[@]}" images import - >/dev/null ||
        die "ctr images import of the OCI layout $archive failed"
    else
      "${CTR[@]}" images import "$archive" >/dev/null || die "ctr images import $archive failed"
    fi
    log "$(basename "$archive"): imported in $(since "$one")"
  done

  # Every image is now there with the digest it was built with.
  have=()
  while read -r ref one; do have[$ref]="$one"; done < <(containerd_digests)
  while read -r ref; do
    stem="$(stem_of "$ref")"
    [ -f "$stem.digest" ] || continue
    [ "${have[$ref]:-}" = "$(cat "$stem.digest")" ] ||
      die "after the import, $ref has digest '${have[$ref]:-none}' in containerd, not $(cat "$stem.digest")"
  done < <(all_refs)
  log "imported ${#imports[@]} archives, $present images already present, in $(since "$started")"
}

# ---- command line ----------------------------------------------------------------------------

ALLOW_MISSING=0
CTR=()
main() {
  local command="" address="$NODE_CACHE/run/containerd/containerd.sock"
  while [ $# -gt 0 ]; do
    case "$1" in
      build | load | plan)
        [ -z "$command" ] || usage_error "one command at a time ('$command', then '$1')"
        command="$1"
        shift
        ;;
      --address) need_value "$1" $# "${2:-}"; address="$2"; shift 2 ;;
      --allow-missing) ALLOW_MISSING=1; shift ;;
      --force) FORCE=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage_error "unknown argument: $1" ;;
    esac
  done
  [ -n "$command" ] || usage_error "a command is needed: build, load or plan"
  BINARY_IMAGES="$(binary_image_lines)"
  case "$command" in
    build) cmd_build ;;
    load) cmd_load "$address" ;;
    plan) cmd_plan ;;
  esac
}

main "$@"
