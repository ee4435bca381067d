"""Replay stored events into the broker, oldest first, removing each once delivered.

Stops at the first refusal so order holds (what is left replays next time). An
event parked by several skills' Triggers (same `source`, `id`) is sent once, at
its first arrival, and all its copies are removed then: the broker fans it out
to every Trigger again. A crash between send and removal can
send an event twice; the runtime's idempotency (`source`, `id`) absorbs that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import httpx

from rouse_runtime.events import load_event, to_http
from rouse_runtime.parking.queue import Filter, ParkingQueue


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    removed: int
    remaining: int
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def replay(
    queue: ParkingQueue, where: Filter, broker_url: str, client: httpx.AsyncClient
) -> ReplayResult:
    """Send matching events to `broker_url` in order; report how far it got."""
    items = await queue.items(where)
    # One send per (source, id), at its first arrival; every copy goes once it is delivered.
    copies: dict[tuple[str, str], list[int]] = {}
    for item in items:
        copies.setdefault((item.source, item.event_id), []).append(item.id)
    first = {ids[0]: identity for identity, ids in copies.items()}
    replayed = removed = 0
    error: str | None = None
    for item in items:
        if item.id not in first:
            continue
        headers, body = to_http(load_event(item.event), "binary")
        try:
            response = await client.post(broker_url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            error = f"broker {broker_url} unreachable: {type(exc).__name__}: {exc}"
            break
        if response.status_code >= 300:
            error = (
                f"broker {broker_url} refused event {item.event_id!r}: "
                f"HTTP {response.status_code} {response.text[:200]}"
            )
            break
        replayed += 1
        removed += await queue.remove(copies[first[item.id]])
    return ReplayResult(
        replayed=replayed, removed=removed, remaining=len(items) - removed, error=error
    )
