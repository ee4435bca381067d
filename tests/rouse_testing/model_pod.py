"""A model provider inside a test cluster: openai_server.py as a restricted pod, and its Service.

The only fake of the real-node tier (a provider lives outside the machine); it speaks the real
OpenAI protocol over HTTP, answers `content` with a fixed `usage`, and is reached by skills at
`http://model.<namespace>.svc.cluster.local/v1`.
"""

from __future__ import annotations

from typing import Any

from rouse_testing.cluster import REPO_ROOT
from rouse_testing.node import script_pod

MODEL_DEPLOYMENT = "deployment/model"


def model_url(namespace: str) -> str:
    """ROUSE_LLM_BASE_URL of a skill in `namespace`."""
    return f"http://model.{namespace}.svc.cluster.local/v1"


def model_manifests(
    prompt_tokens: int, completion_tokens: int, content: str
) -> list[dict[str, Any]]:
    """ConfigMap (the server's source), Deployment (the runtime image) and Service `model`."""
    args = [
        "--host", "0.0.0.0", "--port", "8080",
        "--prompt-tokens", str(prompt_tokens), "--completion-tokens", str(completion_tokens),
        "--content", content,
    ]  # fmt: skip
    return script_pod(
        "model", REPO_ROOT / "tests" / "rouse_testing" / "openai_server.py", args, 8080
    )
