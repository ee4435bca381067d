"""The Knative Service of one skill: scale-to-zero, locked down, scraped by Prometheus."""

from __future__ import annotations

from typing import Any

from rouse_runtime import agentspec
from rouse_runtime.tools.spec import header_refs

from rouse_operator.resources.meta import SERVICE, Manifest, child, labels
from rouse_operator.settings import Settings

PORT = 8080
# Knative cuts a request at timeoutSeconds; the runtime stops the skill at the skill's own
# timeout and still needs a moment to checkpoint and reply, so Knative waits a little longer.
TIMEOUT_GRACE_SECONDS = 10
KNATIVE_MAX_TIMEOUT_SECONDS = 600

MIN_SCALE = "autoscaling.knative.dev/min-scale"
MAX_SCALE = "autoscaling.knative.dev/max-scale"
TARGET = "autoscaling.knative.dev/target"
RETENTION = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
# A Service with this label gets no route through the ingress, only its cluster-local host.
VISIBILITY = "networking.knative.dev/visibility"
CLUSTER_LOCAL = "cluster-local"

SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def state_url_env(settings: Settings) -> dict[str, Any] | None:
    """ROUSE_STATE_URL of a skill: a secretKeyRef when the operator was given a Secret (the
    Secret lives in the Agent's namespace; ops create it there), else the operator's plain
    URL, else nothing (the runtime's SQLite default)."""
    ref = settings.state_url_secret
    if ref is not None:
        return {
            "name": agentspec.ENV_STATE_URL,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    if settings.state_url:
        return {"name": agentspec.ENV_STATE_URL, "value": settings.state_url}
    return None


def api_keys_env(skill: dict[str, Any]) -> dict[str, Any] | None:
    """ROUSE_API_KEYS of a front door with keys: by reference to its Secret, never a value
    (the operator never reads Secrets)."""
    keys = ((skill.get("http") or {}).get("apiKeys") or {}).get("secretKeyRef")
    if keys is None:
        return None
    ref = {"name": keys["name"], "key": keys["key"]}
    return {"name": agentspec.ENV_API_KEYS, "valueFrom": {"secretKeyRef": ref}}


def env(agent: Manifest, skill: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The runtime's ROUSE_* env (agentspec.skill_env), the state store, then the agent's env
    (an Agent's own entry, ROUSE_STATE_URL included, wins over the operator's)."""
    namespace = agent["metadata"]["namespace"]
    broker_url = settings.broker_url(namespace, agent["spec"].get("broker", "default"))
    rouse: list[dict[str, Any]] = [
        {"name": k, "value": v} for k, v in agentspec.skill_env(agent, skill, broker_url).items()
    ]
    state = state_url_env(settings)
    if state is not None:
        rouse.append(state)
    # spec.tools[].headers: each value from its Secret, by reference, never inline.
    for name, ref in header_refs(agent["spec"].get("tools") or []):
        rouse.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    keys = api_keys_env(skill)
    if keys is not None:
        rouse.append(keys)
    user: list[dict[str, Any]] = list(agent["spec"].get("env") or [])
    overridden = {e["name"] for e in user}
    return [e for e in rouse if e["name"] not in overridden] + user


def revision_annotations(skill: dict[str, Any]) -> dict[str, str]:
    """Autoscaling bounds and Prometheus scrape hints on the revision template.

    min-scale here is the spec's `scaling.min`, never the warm pool's: a change of the
    template rolls out a Revision, so the warm floor goes onto the Revisions (floor.py).
    """
    scaling = skill.get("scaling") or {}
    result = {
        MIN_SCALE: str(scaling.get("min", 0)),
        MAX_SCALE: str(scaling.get("max", 10)),
    }
    if scaling.get("target") is not None:
        result[TARGET] = str(scaling["target"])
    if scaling.get("retention"):
        result[RETENTION] = str(scaling["retention"])
    result.update(
        {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(PORT),
            "prometheus.io/path": "/metrics",
        }
    )
    return result


def build(agent: Manifest, skill: dict[str, Any], settings: Settings) -> Manifest:
    """The skill's Knative Service, named <agent>-<skill>."""
    agent_name = agent["metadata"]["name"]
    timeout = int(skill.get("timeoutSeconds", 300))
    container: dict[str, Any] = {
        "name": "skill",
        "image": agent["spec"]["image"],
        "ports": [{"name": "http1", "containerPort": PORT}],
        "env": env(agent, skill, settings),
        "readinessProbe": {"httpGet": {"path": "/readyz"}},
        "securityContext": SECURITY_CONTEXT,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if skill.get("resources"):
        container["resources"] = skill["resources"]
    spec = {
        "template": {
            "metadata": {
                "labels": labels(agent_name, skill["name"]),
                "annotations": revision_annotations(skill),
            },
            "spec": {
                # Skills never call the Kubernetes API: no token in the pod to steal.
                "automountServiceAccountToken": False,
                "containerConcurrency": int(skill.get("concurrency", 10)),
                "timeoutSeconds": min(timeout + TIMEOUT_GRACE_SECONDS, KNATIVE_MAX_TIMEOUT_SECONDS),
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }
    }
    name = agentspec.service_name(agent_name, skill["name"])
    service = child(SERVICE, name, agent, skill["name"], spec)
    if not agentspec.is_front_door(skill):
        # Only the broker (and the cluster) may reach an event skill: a public route would let
        # anyone who reaches the ingress post events to it, past the Triggers and budgets.
        service["metadata"]["labels"][VISIBILITY] = CLUSTER_LOCAL
    return service
