"""The credential the parking service's `drop` and `replay` require.

Anyone who can reach the service could otherwise delete parked events or send
them early. The token comes from a Secret by reference (`ROUSE_PARKING_TOKEN`
from `secretKeyRef`, the chart generates it); the operator and `rouse parked`
send it as `Authorization: Bearer <token>`. Storing events (`/park`,
`/dead-letter`: Knative's deliveries, which carry no credential) and reading
(`/parked`, `/metrics`) stay open inside the cluster.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

ENV_PARKING_TOKEN = "ROUSE_PARKING_TOKEN"


def bearer(token: str | None) -> dict[str, str]:
    """The request header carrying the token (none when there is no token)."""
    return {"authorization": f"Bearer {token}"} if token else {}


def authorized(headers: Mapping[str, str], token: str | None) -> bool:
    """Whether a request carries the token (always, when the service runs without one)."""
    if token is None:
        return True
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)
