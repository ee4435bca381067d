"""What happened to each event, grouped by causal chain (for ``rouse send --wait`` and the view).

A chain is a W3C trace: every event in the local broker carries the
``traceparent`` extension (CloudEvents distributed tracing), and the chain id
is its trace id. The broker starts a trace for an event that arrives without
one and copies the cause's onto replies that lack it; the runtime copies it
onto events a skill sends with ``ctx.emit``. So a chain is every event a sent
event caused, fan-out included.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

TRACEPARENT = "traceparent"
MAX_CHAINS = 1000
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def chain_id(traceparent: str | None) -> str | None:
    """The trace id of a valid ``traceparent`` (all-zero ids are invalid per W3C)."""
    match = _TRACEPARENT.match(traceparent or "")
    if match is None or set(match.group(1)) == {"0"}:
        return None
    return match.group(1)


def new_traceparent() -> str:
    """A fresh sampled W3C traceparent."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@dataclass
class Delivery:
    """One skill's handling of one event (all its attempts)."""

    skill: str
    outcome: str = "pending"  # pending | replied | accepted | dead_lettered | failed
    attempts: int = 0
    status: int | None = None
    cold: bool = False
    seconds: float = 0.0
    reply_id: str | None = None
    reply_type: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "skill": self.skill,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "status": self.status,
            "cold": self.cold,
            "seconds": round(self.seconds, 4),
            "replyId": self.reply_id,
            "replyType": self.reply_type,
            "error": self.error,
        }


@dataclass
class EventRecord:
    """An event the broker accepted, where it came from and where it went."""

    id: str
    type: str
    source: str
    chain: str
    via: str  # send | reply:<skill> | schedule | replay
    data: Any
    parent: str | None = None
    time: float = field(default_factory=time.time)
    routed_to: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    parked: bool = False  # stored in the parking queue: the daily budget is spent

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "chain": self.chain,
            "via": self.via,
            "parent": self.parent,
            "time": self.time,
            "data": self.data,
            "routedTo": self.routed_to,
            "deliveries": [d.as_json() for d in self.deliveries],
            "parked": self.parked,
        }


@dataclass
class Chain:
    """The events of one chain and how many deliveries are still running."""

    id: str
    events: list[EventRecord] = field(default_factory=list)
    pending: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "chain": self.id,
            "pending": self.pending,
            "done": self.pending == 0,
            "events": [e.as_json() for e in self.events],
        }


class ChainLog:
    """The last ``MAX_CHAINS`` chains, in memory (dead letters are kept durably in the parking queue)."""

    def __init__(self, max_chains: int = MAX_CHAINS) -> None:
        self._chains: OrderedDict[str, Chain] = OrderedDict()
        self._max = max_chains

    def chain(self, chain_id: str) -> Chain:
        """The chain, created on first use."""
        found = self._chains.get(chain_id)
        if found is None:
            found = self._chains[chain_id] = Chain(chain_id)
            while len(self._chains) > self._max:
                self._chains.popitem(last=False)
        return found

    def get(self, chain_id: str) -> Chain | None:
        return self._chains.get(chain_id)

    def recent(self, limit: int) -> list[EventRecord]:
        """The most recent events over all chains, newest last."""
        events = [e for chain in self._chains.values() for e in chain.events]
        return sorted(events, key=lambda e: e.time)[-limit:]
