#!/usr/bin/env bash
# The whole kind path, asserting each step: cluster, Knative, images, chart,
# both example agents answering through the broker, restricted pods admitted.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME] [--down]

Run kind-up, knative, images, deploy and example --assert (hello,
support-triage, then tools with its MCP server) against the kind cluster NAME, then check that the operator
reports the agents Ready and that every skill pod runs in a namespace enforcing
the restricted Pod Security Standard. Fails at the first step that fails.

Options:
  --name NAME  kind cluster name (default: rouse-e2e)
  --down       delete the cluster at the end (also when a step fails)
  -h, --help   show this help
Needs: docker (a running engine), kind, kubectl, helm, internet access.
USAGE
}

name=rouse-e2e
down=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; shift 2 ;;
    --down) down=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
check_name "cluster name" "$name"
need docker kind kubectl helm

here="$(dirname "$0")"
if [ "$down" -eq 1 ]; then
  trap '"$here/kind-down.sh" --name "$name"' EXIT
fi
namespace=rouse-e2e-demo

"$here/kind-up.sh" --name "$name"
"$here/knative.sh" --name "$name"
"$here/images.sh" --name "$name"
"$here/deploy.sh" --name "$name"
"$here/example.sh" --name "$name" --namespace "$namespace" --agent hello --assert
"$here/example.sh" --name "$name" --namespace "$namespace" --agent support-triage --assert
"$here/example.sh" --name "$name" --namespace "$namespace" --agent tools --assert

kc=(kubectl --context "kind-$name")
for agent in hello support-triage tools; do
  phase="$("${kc[@]}" -n "$namespace" get agent "$agent" -o jsonpath='{.status.phase}')"
  [ "$phase" = Ready ] || die "agent $agent is in phase '$phase', expected Ready"
done
enforce="$("${kc[@]}" get namespace "$namespace" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')"
[ "$enforce" = restricted ] || die "namespace $namespace does not enforce the restricted profile"
# No ReplicaSet of a skill may be stuck on a Pod Security refusal.
if "${kc[@]}" -n "$namespace" get events --field-selector reason=FailedCreate -o jsonpath='{.items[*].message}' \
  | grep -q 'violates PodSecurity'; then
  die "a pod in $namespace was refused by Pod Security admission"
fi
"${kc[@]}" -n "$namespace" get agents
log "e2e passed on cluster '$name'"
