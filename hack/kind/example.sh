#!/usr/bin/env bash
# Apply an example agent, send it a CloudEvent through the broker ingress and
# print the chain of events that follows (each skill's reply wakes the next).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--name NAME | --context CTX] [--namespace NS] [--agent AGENT] [--tag TAG] [--release-namespace NS] [--assert] [--timeout SECONDS]

In namespace NS (labelled pod-security.kubernetes.io/enforce=restricted): copy
the chart Redis's state URL Secret for skills (rouse-redis, key skill-url) from the release
namespace (skills read it in their own namespace), create the Broker 'default', an event display subscribed to every event of the
broker, and the example agent examples/AGENT/agent.yaml; wait until the Agent
is Ready; POST one CloudEvent to the broker ingress through kubectl port-forward; print the
events that flow back through the broker.

Agents and what they answer:
  hello           dev.rouse.hello -> dev.rouse.hello.greeted
  support-triage  com.example.ticket.created -> ticket.triaged -> reply.drafted,
                  and (urgent ticket) ticket.urgent -> ticket.escalated
  tools           com.example.note.submitted -> com.example.note.filed, through the
                  example's MCP notes server (a Deployment + Service 'notes' of the same
                  image, its token in Secret notes-token, made here)
  research-brief  com.example.brief.requested -> question.asked (fanned out) ->
                  question.answered -> brief.ready (the join)
  trip-booking    com.example.trip.requested -> flight.booked -> trip.booked

Options:
  --name NAME        act on the kind cluster NAME (context kind-NAME)
  --context CTX      act on kubeconfig context CTX (default: kubectl's current context,
                     which 'kind create cluster' and the real node's KUBECONFIG both set)
  --namespace NS     namespace of the example (default: rouse-demo)
  --agent AGENT      hello, support-triage, tools, research-brief or trip-booking
                     (default: hello)
  --tag TAG          tag of the example image built by images.sh (default: $ROUSE_TAG)
  --release-namespace NS  namespace of the Rouse release (default: rouse-system)
  --assert           exit non-zero unless every expected event type is seen
  --timeout SECONDS  how long to wait for readiness and for the chain (default: 300)
  -h, --help         show this help
Needs: kubectl, curl, python3, a cluster prepared by kind-up, knative, images and deploy
(or by make node-up and deploy).
USAGE
}

name=rouse
context=""
namespace=rouse-demo
agent=hello
tag="$ROUSE_TAG"
assert=0
timeout=300
release_namespace=rouse-system
while [ $# -gt 0 ]; do
  case "$1" in
    --name) need_value "$1" $# "${2:-}"; name="$2"; context="kind-$2"; shift 2 ;;
    --context) need_value "$1" $# "${2:-}"; context="$2"; shift 2 ;;
    --namespace) need_value "$1" $# "${2:-}"; namespace="$2"; shift 2 ;;
    --agent) need_value "$1" $# "${2:-}"; agent="$2"; shift 2 ;;
    --tag) need_value "$1" $# "${2:-}"; tag="$2"; shift 2 ;;
    --release-namespace) need_value "$1" $# "${2:-}"; release_namespace="$2"; shift 2 ;;
    --timeout) need_value "$1" $# "${2:-}"; timeout="$2"; shift 2 ;;
    --assert) assert=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
check_name "cluster name" "$name"
check_name "namespace" "$namespace"
check_name "release namespace" "$release_namespace"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || usage_error "timeout '$timeout' is not a positive number of seconds"
case "$agent" in
  hello)
    event_type=dev.rouse.hello
    event_data='{"name": "Ada"}'
    expected=(dev.rouse.hello.greeted)
    ;;
  support-triage)
    event_type=com.example.ticket.created
    event_data='{"id": "T-1", "subject": "Site down", "body": "Checkout returns 500 for everyone", "customer": "Ada"}'
    expected=(com.example.ticket.triaged com.example.reply.drafted com.example.ticket.urgent com.example.ticket.escalated)
    ;;
  tools)
    event_type=com.example.note.submitted
    event_data='{"text": "call Ada back"}'
    expected=(com.example.note.filed)
    ;;
  research-brief)
    event_type=com.example.brief.requested
    event_data='{"topic": "heat pumps"}'
    expected=(com.example.question.asked com.example.question.answered com.example.brief.ready)
    ;;
  trip-booking)
    event_type=com.example.trip.requested
    event_data='{"to": "Lisbon"}'
    expected=(com.example.flight.booked com.example.trip.booked)
    ;;
  *) usage_error "unknown agent '$agent' (hello, support-triage, tools, research-brief or trip-booking)" ;;
esac

need kubectl curl python3
kc=(kubectl)
[ -n "$context" ] && kc+=(--context "$context")
ns=(-n "$namespace")
ingress="http://broker-ingress.knative-eventing.svc.cluster.local/$namespace/default"
restricted='{"allowPrivilegeEscalation": false, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}'

log "namespace $namespace (Pod Security Standards: restricted)"
"${kc[@]}" create namespace "$namespace" --dry-run=client -o yaml | "${kc[@]}" apply -f -
"${kc[@]}" label namespace "$namespace" --overwrite pod-security.kubernetes.io/enforce=restricted

# The chart's Redis has a generated password; skills read the URL from a Secret in their own
# namespace. Copied as base64 data, never decoded or printed here.
secret=rouse-redis
if "${kc[@]}" -n "$release_namespace" get secret "$secret" >/dev/null 2>&1; then
  log "state store Secret $secret from $release_namespace"
  data=$("${kc[@]}" -n "$release_namespace" get secret "$secret" -o jsonpath='{.data.skill-url}')
  printf '{"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "%s", "namespace": "%s"}, "data": {"skill-url": "%s"}}' \
    "$secret" "$namespace" "$data" | "${kc[@]}" apply -f - >/dev/null
fi

log "broker and event display"
"${kc[@]}" "${ns[@]}" apply -f - <<YAML
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: event-display, labels: {app: event-display}}
spec:
  replicas: 1
  selector: {matchLabels: {app: event-display}}
  template:
    metadata: {labels: {app: event-display}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: display
        image: $EVENT_DISPLAY_IMAGE
        imagePullPolicy: IfNotPresent
        ports: [{containerPort: 8080}]
        securityContext: $restricted
---
apiVersion: v1
kind: Service
metadata: {name: event-display}
spec:
  selector: {app: event-display}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: event-display}
spec:
  broker: default
  subscriber:
    ref: {apiVersion: v1, kind: Service, name: event-display}
YAML
"${kc[@]}" "${ns[@]}" wait --for=condition=Ready broker/default --timeout="${timeout}s"
"${kc[@]}" "${ns[@]}" rollout status deployment/event-display --timeout="${timeout}s"
"${kc[@]}" "${ns[@]}" wait --for=condition=Ready trigger/event-display --timeout="${timeout}s"

image="ghcr.io/rouse-dev/examples-$agent:$tag"
tools_url=""
if [ "$agent" = tools ]; then
  # The MCP server the agent's skills call, from the same image; the token only in a Secret.
  log "notes MCP server (Deployment + Service notes, Secret notes-token)"
  if ! "${kc[@]}" "${ns[@]}" get secret notes-token >/dev/null 2>&1; then
    token="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    "${kc[@]}" "${ns[@]}" create secret generic notes-token \
      --from-literal=token="$token" --from-literal=authorization="Bearer $token" >/dev/null
  fi
  "${kc[@]}" "${ns[@]}" apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: notes, labels: {app: notes}}
spec:
  replicas: 1
  selector: {matchLabels: {app: notes}}
  template:
    metadata: {labels: {app: notes}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: notes
        image: $image
        imagePullPolicy: IfNotPresent
        workingDir: /app
        command: [python, -m, notes.server, --host, 0.0.0.0, --port, "8080"]
        env:
        - name: NOTES_TOKEN
          valueFrom: {secretKeyRef: {name: notes-token, key: token}}
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}}
        securityContext: $restricted
---
apiVersion: v1
kind: Service
metadata: {name: notes}
spec:
  selector: {app: notes}
  ports: [{port: 80, targetPort: 8080}]
YAML
  "${kc[@]}" "${ns[@]}" rollout status deployment/notes --timeout="${timeout}s"
  tools_url="http://notes.$namespace.svc.cluster.local/mcp"
fi
if [ "$agent" = support-triage ]; then
  # The front door `ask` reads its callers' keys from this Secret (one per line): make one key
  # unless the Secret exists (never printed; read it with kubectl get secret ... | base64 -d).
  if ! "${kc[@]}" "${ns[@]}" get secret support-triage-keys >/dev/null 2>&1; then
    key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
    "${kc[@]}" "${ns[@]}" create secret generic support-triage-keys --from-literal=keys="$key" >/dev/null
    log "front door keys: Secret support-triage-keys (key keys) in $namespace"
  fi
fi

log "agent $agent"
sed -e "s#\(image: ghcr.io/rouse-dev/examples-$agent\):[^[:space:]]*#\1:$tag#" \
  -e "${tools_url:+s#url: http://127.0.0.1:8765/mcp#url: $tools_url#}" \
  "$ROUSE_ROOT/examples/$agent/agent.yaml" | "${kc[@]}" "${ns[@]}" apply -f -
"${kc[@]}" "${ns[@]}" wait --for=condition=Ready "agent/$agent" --timeout="${timeout}s"
"${kc[@]}" "${ns[@]}" get agent "$agent"
"${kc[@]}" "${ns[@]}" get ksvc,triggers -l "rouse.dev/agent=$agent"

id="example-$(date +%s)"
# The broker ingress is cluster-internal: reach it the way a user does, with a port-forward.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${kc[@]}" -n knative-eventing port-forward svc/broker-ingress "$port:80" >/dev/null 2>&1 &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port/$namespace/default"
log "sending $event_type (id $id) to the broker ingress ($ingress, forwarded to $url)"
sent() {
  curl -sS --fail-with-body -X POST "$url" \
    -H "Ce-Id: $id" -H "Ce-Specversion: 1.0" -H "Ce-Type: $event_type" \
    -H "Ce-Source: /hack/kind/example" -H "Content-Type: application/json" -d "$event_data"
}
wait_for 60 "the broker ingress to accept the event" sent

# The event display logs every event the broker delivers; the chain is there.
seen_all() {
  local logs type
  logs="$("${kc[@]}" "${ns[@]}" logs deployment/event-display 2>/dev/null)" || return 1
  for type in "${expected[@]}"; do
    grep -q "type: $type\$" <<<"$logs" || return 1
  done
}
status=0
wait_for "$timeout" "the reply chain (${expected[*]})" seen_all || status=1
log "events seen by the broker's event display:"
"${kc[@]}" "${ns[@]}" logs deployment/event-display | grep -E '^  (type|source|id): |^Data,|^  [{"]' || true
if [ "$assert" -eq 1 ] && [ "$status" -ne 0 ]; then
  die "expected event types not all seen: ${expected[*]}"
fi
log "done"
