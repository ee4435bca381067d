"""Knative's own defaulting and validation, via tests/knative-validate (built by `make envtest`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from rouse_testing.cluster import BIN_DIR

KNATIVE_VALIDATE = BIN_DIR / "knative-validate"


def run_knative_validate(text: str) -> subprocess.CompletedProcess[str]:
    """Run knative-validate on YAML/JSON text (multi-document allowed)."""
    if not KNATIVE_VALIDATE.exists():
        raise AssertionError(f"{KNATIVE_VALIDATE} is missing: run `make envtest`")
    return subprocess.run(
        [str(KNATIVE_VALIDATE)], input=text, capture_output=True, text=True, timeout=60, check=False
    )


def knative_validate(manifests: Sequence[Mapping[str, Any]]) -> None:
    """Assert Knative's SetDefaults + Validate accept every manifest (raises with Knative's message)."""
    if not manifests:
        raise AssertionError("knative_validate: no manifests given")
    text = "\n---\n".join(json.dumps(m) for m in manifests)
    proc = run_knative_validate(text)
    if proc.returncode != 0:
        raise AssertionError(f"Knative refuses a manifest:\n{proc.stderr.strip()}")


SECURE_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def knative_objects(
    namespace: str, owner: dict[str, Any] | None = None, *, concurrency: int = 10
) -> list[dict[str, Any]]:
    """Sample manifests: a Knative Service, a Trigger into it and a PingSource into the Broker."""
    meta: dict[str, Any] = {
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "rouse"},
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "hello", **meta},
        "spec": {
            "template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/max-scale": "3"}},
                "spec": {
                    "containerConcurrency": concurrency,
                    "timeoutSeconds": 300,
                    "containers": [
                        {
                            "image": "ghcr.io/example/hello:1.0",
                            "env": [{"name": "ROUSE_SKILL", "value": "hello"}],
                            "securityContext": SECURE_CONTEXT,
                        }
                    ],
                },
            }
        },
    }
    trigger = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "hello-greeting", **meta},
        "spec": {
            "broker": "default",
            "filter": {"attributes": {"type": "com.example.greeting"}},
            "subscriber": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "hello"}
            },
            "delivery": {"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT1S"},
        },
    }
    ping = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": "hello-every-15m", **meta},
        "spec": {
            "schedule": "*/15 * * * *",
            "contentType": "application/json",
            "data": '{"hello": "world"}',
            "sink": {
                "ref": {
                    "apiVersion": "eventing.knative.dev/v1",
                    "kind": "Broker",
                    "name": "default",
                }
            },
        },
    }
    return [service, trigger, ping]
