"""Playing Knative's Configuration controller where it does not run (envtest): Revisions.

The operator puts a skill's warm floor on the Revisions serving its Service
(rouse_operator.resources.floor); these helpers make such a Revision the way Knative
would (from the Service's template, named <service>-<5 digits>, with the Service's
status pointing at it) and read the floor back.
"""

from __future__ import annotations

import json
from typing import Any

from rouse_testing.operator import get_json

SERVICES = "services.serving.knative.dev"
REVISIONS = "revisions.serving.knative.dev"
MIN_SCALE = "autoscaling.knative.dev/min-scale"


def play_revision(cluster: Any, namespace: str, service: str, number: int = 1) -> str:
    """Create Revision number `number` of `service` from its template and make it the
    Service's latest created and ready one; returns its name."""
    ksvc = get_json(cluster, SERVICES, "-n", namespace, service)
    template = ksvc["spec"]["template"]
    name = f"{service}-{number:05d}"
    revision = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"serving.knative.dev/service": service},
            "annotations": dict(template["metadata"].get("annotations") or {}),
        },
        "spec": template["spec"],
    }
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(revision))
    status = {"latestCreatedRevisionName": name, "latestReadyRevisionName": name}
    cluster.kubectl(
        "patch", SERVICES, service, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    return name


def revision_floor(cluster: Any, namespace: str, revision: str) -> str | None:
    """The min-scale annotation the Revision carries now."""
    obj = get_json(cluster, REVISIONS, "-n", namespace, revision)
    value: str | None = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(MIN_SCALE)
    return value
