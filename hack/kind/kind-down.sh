#!/usr/bin/env bash
# Delete the kind cluster (and with it everything installed in it).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME]

Delete the kind cluster NAME. Does nothing when it does not exist.

Options:
  --name NAME  kind cluster name (default: rouse)
  -h, --help   show this help
Needs: docker, kind.
USAGE
}

name=rouse
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
check_name "cluster name" "$name"

need kind
if kind get clusters 2>/dev/null | grep -qx "$name"; then
  kind delete cluster --name "$name"
else
  log "no cluster named '$name'"
fi
