"""The runtime's side of a suspended agent: 429 (`onExhausted: reject`), or 503 at a front door.

The operator's budget policy writes a gate record into the state store when an
agent is suspended, and removes it when the agent may spend again (`gate_record`
says what, `sync_gate` writes it). Each runtime process checks the record before
running a skill, re-reading it at most every `refresh` seconds, until the reset:

- `reject`: every skill refuses with 429 and `Retry-After` (Knative retries 429
  with the Trigger's backoff, then dead-letters);
- `park`: the Triggers point at the parking service, so event skills get nothing
  to refuse; a front door, which no Trigger feeds, answers 503 with the reason
  and `Retry-After` instead of spending (a person's request cannot be parked).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent
from starlette.responses import JSONResponse, Response

from rouse_runtime.store import Store, StoreError

if TYPE_CHECKING:
    from rouse_runtime.policies.budget import BudgetDecision
    from rouse_runtime.server import Runtime

# `budget-gate:<namespace>:<agent>`: no `/` and no `[`, so it never equals a key a skill
# writes (ctx.state and checkpoints are `<namespace>/<agent>/...`, waits `wait:[...]`), and
# the chart's Redis ACL gives skills this prefix read-only (charts/rouse/templates/_helpers.tpl,
# rouse.redisSkillAcl; tests/integration/test_redis_acl.py).
GATE_PREFIX = "budget-gate:"
DEFAULT_REFRESH_SECONDS = 2.0


def gate_key(namespace: str, agent: str) -> str:
    return f"{GATE_PREFIX}{namespace}:{agent}"


def gate_record(decision: BudgetDecision) -> dict[str, Any] | None:
    """What to store for a budget decision: a closed gate, or None (open)."""
    if not decision.suspended or decision.action not in ("reject", "park"):
        return None
    return {
        "until": decision.resets_at.astimezone(UTC).isoformat(),
        "reason": decision.reason,
        "message": decision.message,
        "action": decision.action,
    }


async def sync_gate(
    store: Store, namespace: str, agent: str, decision: BudgetDecision | None
) -> None:
    """Close or open an agent's gate in the state store (the operator's side); no decision (no
    daily budget any more) opens it."""
    record = None if decision is None else gate_record(decision)
    if decision is None or record is None:
        await store.delete(gate_key(namespace, agent))
        return
    seconds = (decision.resets_at - datetime.now(UTC)).total_seconds()
    await store.set(gate_key(namespace, agent), record, ttl=max(60.0, seconds + 3600.0))


class BudgetGate:
    """An admission check (see rouse_runtime.server) refusing events while the gate is closed."""

    def __init__(
        self,
        store: Callable[[], Store],
        namespace: str,
        agent: str,
        *,
        refresh: float = DEFAULT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        front_door: bool = False,
    ) -> None:
        self._store = store
        self._front_door = front_door
        self._key = gate_key(namespace, agent)
        self._refresh = refresh
        self._clock = clock
        self._read_at: float | None = None
        self._record: Any = None

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> BudgetGate:
        """The gate of a runtime process's agent, in its state store."""
        front_door = runtime.config.front_door is not None
        return cls(
            lambda: runtime.store, runtime.namespace, runtime.config.agent, front_door=front_door
        )

    async def __call__(self, event: CloudEvent) -> Response | None:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh:
            # A store failure keeps the last answer; the idempotency claim reports the store.
            with contextlib.suppress(StoreError):
                self._record = await self._store().get(self._key)
            self._read_at = now
        record = self._record
        if not isinstance(record, dict):
            return None
        try:
            until = datetime.fromisoformat(str(record["until"]))
        except (KeyError, ValueError):
            return None
        left = (until - datetime.now(UTC)).total_seconds()
        action = record.get("action", "reject")  # records before `action` were reject's
        if left <= 0 or (action == "park" and not self._front_door):
            return None
        message = record.get("message", "daily budget spent")
        detail = f"{message} (onExhausted: {action})"
        if action == "park":
            detail = (
                f"{message}: the agent is suspended until {until.isoformat()} (onExhausted: park)"
            )
        return JSONResponse(
            {"error": "budget exhausted", "reason": record.get("reason"), "detail": detail},
            status_code=429 if action == "reject" else 503,
            headers={"retry-after": str(int(left) + 1)},
        )
