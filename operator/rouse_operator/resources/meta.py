"""What every child carries: its kind, labels, the ownerReference to its Agent.

One place for these, so the builders, the reconciler (which lists children by
label) and the garbage collector (which follows ownerReferences) agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rouse_runtime.agentspec import API_VERSION, KIND

Manifest = dict[str, Any]

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_AGENT = "rouse.dev/agent"
LABEL_SKILL = "rouse.dev/skill"
MANAGED_BY = "rouse"
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


@dataclass(frozen=True)
class ChildKind:
    """A kind of child the operator makes: how to address it in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


SERVICE = ChildKind("serving.knative.dev", "v1", "services", "Service")
TRIGGER = ChildKind("eventing.knative.dev", "v1", "triggers", "Trigger")
PINGSOURCE = ChildKind("sources.knative.dev", "v1", "pingsources", "PingSource")
CHILD_KINDS = (SERVICE, TRIGGER, PINGSOURCE)
BROKER = ChildKind("eventing.knative.dev", "v1", "brokers", "Broker")
# Knative makes these from a Service; Rouse only sets a skill's warm floor on them (floor.py).
REVISION = ChildKind("serving.knative.dev", "v1", "revisions", "Revision")


def labels(agent_name: str, skill_name: str) -> dict[str, str]:
    """Labels on every child: who manages it, which agent and skill it serves."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_AGENT: agent_name, LABEL_SKILL: skill_name}


def owner_reference(agent: Manifest) -> dict[str, Any]:
    """The Agent as controller owner: deleting it lets the garbage collector remove the child."""
    meta = agent["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child(kind: ChildKind, name: str, agent: Manifest, skill_name: str, spec: Any) -> Manifest:
    """A child manifest with Rouse's metadata around `spec`."""
    meta = agent["metadata"]
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": labels(meta["name"], skill_name),
    }
    if meta.get("uid"):
        metadata["ownerReferences"] = [owner_reference(agent)]
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata, "spec": spec}
