"""A model provider inside a test cluster: openai_server.py as a restricted pod, and its Service.

The only fake of the real-node tier (a provider lives outside the machine); it speaks the real
OpenAI protocol over HTTP, answers `content` with a fixed `usage`, and is reached by skills at
`http://model.<namespace>.svc.cluster.local/v1`.
"""

from __future__ import annotations

from typing import Any

from rouse_testing.cluster import REPO_ROOT

MODEL_DEPLOYMENT = "deployment/model"


def model_url(namespace: str) -> str:
    """ROUSE_LLM_BASE_URL of a skill in `namespace`."""
    return f"http://model.{namespace}.svc.cluster.local/v1"


def model_manifests(
    prompt_tokens: int, completion_tokens: int, content: str
) -> list[dict[str, Any]]:
    """ConfigMap (the server's source), Deployment (the runtime image) and Service `model`."""
    labels = {"app": "model"}
    restricted = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    source = (REPO_ROOT / "tests" / "rouse_testing" / "openai_server.py").read_text()
    args = [
        "python", "/srv/openai_server.py", "--host", "0.0.0.0", "--port", "8080",
        "--prompt-tokens", str(prompt_tokens), "--completion-tokens", str(completion_tokens),
        "--content", content,
    ]  # fmt: skip
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "model"},
            "data": {"openai_server.py": source},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "model", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                        "containers": [
                            {
                                "name": "model",
                                "image": "ghcr.io/rouse-dev/rouse-runtime:0.1.0",
                                "imagePullPolicy": "IfNotPresent",
                                "command": args,
                                "ports": [{"containerPort": 8080}],
                                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                                "securityContext": restricted,
                                "volumeMounts": [{"name": "src", "mountPath": "/srv"}],
                            }
                        ],
                        "volumes": [{"name": "src", "configMap": {"name": "model"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "model"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]
