"""The state store interface every backend implements.

Values are JSON documents. Idempotency uses a claim/complete/release protocol so
one delivery of an event runs while its duplicates wait or read the stored
result: `claim` atomically takes a key (or reports it done or busy), `complete`
turns the owner's claim into the stored result, `release` drops a claim whose
run failed so the broker's retry can run again. A claim carries a lease: when
its owner dies, the key frees itself and a redelivery takes over.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

from rouse_runtime.redact import redact


class StoreError(RuntimeError):
    """The state store is misconfigured or unreachable; the message never holds a credential."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


@dataclass(frozen=True)
class Claim:
    """Outcome of `Store.claim`: ours to run, already done (with its record), or busy elsewhere."""

    state: Literal["claimed", "done", "busy"]
    record: Any = None


class Store(abc.ABC):
    """Durable key/value, checkpoints and idempotency records."""

    @abc.abstractmethod
    async def get(self, key: str) -> Any:
        """The value stored under key, or None."""

    @abc.abstractmethod
    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store a JSON value, optionally expiring after ttl seconds."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove key; True when it existed."""

    @abc.abstractmethod
    async def save_checkpoint(self, key: str, value: Any) -> None:
        """Store (replace) the checkpoint under key."""

    @abc.abstractmethod
    async def load_checkpoint(self, key: str) -> Any:
        """The checkpoint under key, or None."""

    @abc.abstractmethod
    async def claim(self, key: str, owner: str, lease: float) -> Claim:
        """Take key for owner for lease seconds unless it is done or held by a live claim."""

    @abc.abstractmethod
    async def complete(self, key: str, owner: str, record: Any, ttl: float) -> bool:
        """Replace owner's claim by the result record (kept ttl seconds); False if not owner."""

    @abc.abstractmethod
    async def release(self, key: str, owner: str) -> bool:
        """Drop owner's unfinished claim; False if the key is not owner's claim."""

    @abc.abstractmethod
    async def extend(self, key: str, owner: str, lease: float) -> bool:
        """Renew owner's unfinished claim for `lease` seconds from now; False if it is not
        owner's any more (expired and taken, or released)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""
