"""The delivery spec of a skill's Trigger: when to retry and how long to wait.

Mirrors Knative eventing (``pkg/kncloudevents`` retries): the n-th retry
(n = 1, 2, ...) waits ``backoffDelay * n`` for ``linear`` and
``backoffDelay * 2**n`` for ``exponential``; a delivery is retried after a
network error, a 5xx, or 404/408/409/429; any other answer is final. After the
last failed attempt the event goes to the dead-letter sink when one is set.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from rouse_runtime.local.durations import iso8601_seconds

RETRYABLE_STATUS = frozenset({404, 408, 409, 429})


@dataclass(frozen=True)
class DeliverySpec:
    """A skill's delivery settings with Knative's meaning."""

    retries: int = 0
    backoff_policy: str = "exponential"
    backoff_delay: float = 0.0
    dead_letter: bool = False


def delivery_spec(skill: dict[str, Any]) -> DeliverySpec:
    """Read ``skill.delivery`` (absent fields: no retries, no dead letter, as Knative)."""
    delivery = skill.get("delivery") or {}
    delay = delivery.get("backoffDelay")
    policy = str(delivery.get("backoffPolicy") or "exponential")
    if policy not in ("linear", "exponential"):
        raise ValueError(f"delivery.backoffPolicy must be linear or exponential, got {policy!r}")
    return DeliverySpec(
        retries=int(delivery.get("retries") or 0),
        backoff_policy=policy,
        backoff_delay=iso8601_seconds(str(delay)) if delay else 0.0,
        dead_letter=bool(delivery.get("deadLetter", False)),
    )


def backoff_seconds(spec: DeliverySpec, retry: int) -> float:
    """Wait before the ``retry``-th retry (1-based)."""
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    if spec.backoff_policy == "linear":
        return spec.backoff_delay * retry
    return spec.backoff_delay * float(2**retry)


def retryable(status: int | None) -> bool:
    """Whether Knative would retry an answer (``None`` = no answer: network error, timeout)."""
    return status is None or status >= 500 or status in RETRYABLE_STATUS


def schedule_of_waits(spec: DeliverySpec) -> list[float]:
    """Every wait a failing delivery goes through, in order (for logs and docs)."""
    return [backoff_seconds(spec, n) for n in range(1, spec.retries + 1)]


# The extension attributes Knative's dispatcher adds to an event it sends to a dead-letter
# sink: where the delivery failed, the last answer's status and (base64, at most 1024 bytes)
# its body. Local mode adds the same, so a dead letter reads alike in both modes.
ERROR_DEST, ERROR_CODE, ERROR_DATA = "knativeerrordest", "knativeerrorcode", "knativeerrordata"
ERROR_DATA_LIMIT = 1024


def dead_letter_attributes(destination: str, status: int | None, body: str) -> dict[str, str]:
    """Knative's dead-letter extension attributes for a delivery that failed."""
    attributes = {ERROR_DEST: destination}
    if status is not None:
        attributes[ERROR_CODE] = str(status)
    if body:
        data = body.encode("utf-8", "replace")[:ERROR_DATA_LIMIT]
        attributes[ERROR_DATA] = base64.b64encode(data).decode("ascii")
    return attributes
