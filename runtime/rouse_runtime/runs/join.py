"""Fan-in: a skill fans out N events, and a join skill runs once when all N results are in.

`ctx.fan_out(type, items)` emits one event per item, each carrying the join's
id and its part in extension attributes (`rousejoin`, `rousepart`,
`rouseparts`); a worker's reply carries them on (the runtime copies them onto
replies). A skill declared `join` in the Agent (`ROUSE_JOIN=true`) collects
those results: each arriving part is stored atomically, and the arrival that
completes the set (or arrives past `join.deadline`, counted from the first
part) runs the skill once with `ctx.joined`: the results in part order, and
which parts are missing.

Exactly once under redelivery, duplicates and concurrency: a redelivered result
(same source and id) is answered by the idempotency record before it gets here;
a second event for a part already in is a duplicate; the step that completes
the set and the step that marks the join fired are one atomic operation (one
SQLite transaction in the store's group commit, one Lua script on Redis), so
two last parts arriving at once in two pods fire once. The firing event is
remembered: if the join skill fails (500), the broker's retry of that same
event fires it again; any other arrival after the fire is `late`. The state
lives in the store, so the parts survive scale to zero between arrivals.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent

from rouse_runtime.events import EventError
from rouse_runtime.runs.ids import InvalidRunIdError, check_run_id
from rouse_runtime.store import Store

if TYPE_CHECKING:
    import sqlite3

JOIN_ATTRIBUTE = "rousejoin"
PART_ATTRIBUTE = "rousepart"
PARTS_ATTRIBUTE = "rouseparts"
JOIN_ATTRIBUTES = (JOIN_ATTRIBUTE, PART_ATTRIBUTE, PARTS_ATTRIBUTE)
MAX_PARTS = 10_000
JOIN_TTL_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Part:
    """Which part of which join an event is."""

    join: str
    index: int
    parts: int


@dataclass(frozen=True)
class Joined:
    """`ctx.joined`: the results of a fan-out, in part order (None where missing)."""

    id: str
    parts: int
    results: list[Any]
    missing: list[int]

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Arrival:
    """What adding a part did: `fire` (run the join now), or collected / duplicate / late."""

    kind: str
    have: int
    joined: Joined | None = None


def _int(event: CloudEvent, name: str, low: int, high: int) -> int:
    raw: Any = event.get(name)
    try:
        value: int | None = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high or isinstance(raw, bool):
        raise EventError(
            400, "invalid attribute", f"extension attribute {name}={raw!r}: an integer {low}-{high}"
        )
    return value


def part_of(event: CloudEvent) -> Part | None:
    """The join part an event carries; None without `rousejoin`; 400 when malformed."""
    join = event.get(JOIN_ATTRIBUTE)
    if join is None:
        return None
    try:
        check_run_id(join)
    except InvalidRunIdError as exc:
        raise EventError(
            400, "invalid attribute", str(exc).replace("rouserun", JOIN_ATTRIBUTE, 1)
        ) from None
    parts = _int(event, PARTS_ATTRIBUTE, 1, MAX_PARTS)
    return Part(str(join), _int(event, PART_ATTRIBUTE, 0, parts - 1), parts)


def _joined(part: Part, stored: dict[int, str]) -> Joined:
    results = [json.loads(stored[i]) if i in stored else None for i in range(part.parts)]
    return Joined(part.join, part.parts, results, [i for i in range(part.parts) if i not in stored])


class Joins:
    """The join state of one skill in the state store (SQLite group commit or Redis script)."""

    def __init__(self, store: Store, deadline: float | None) -> None:
        self.store = store
        self.deadline = deadline

    async def arrive(self, key: str, part: Part, event: CloudEvent, firer: str) -> Arrival:
        """Add event's data as `part` of the join stored under key (see the module docstring).

        `firer` names this delivery (its idempotency key): the same event retried
        after a failed join fires again.
        """
        value = json.dumps(event.data, default=str)
        from rouse_runtime.store.sqlite import SqliteStore

        if isinstance(self.store, SqliteStore):
            return await self.store.enqueue(
                lambda db: self._sqlite(db, key, part, value, firer, time.time())
            )
        return await self._redis(key, part, value, firer)

    # -- SQLite: one transaction of the store's group commit ---------------------------------

    def _sqlite(
        self, db: sqlite3.Connection, key: str, part: Part, value: str, firer: str, now: float
    ) -> Arrival:
        db.execute(
            "CREATE TABLE IF NOT EXISTS join_part (key TEXT NOT NULL, part INTEGER NOT NULL,"
            " value TEXT NOT NULL, PRIMARY KEY (key, part))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS join_meta (key TEXT PRIMARY KEY, parts INTEGER NOT NULL,"
            " first REAL NOT NULL, fired TEXT, expires REAL NOT NULL)"
        )
        db.execute("DELETE FROM join_meta WHERE expires < ?", (now,))
        db.execute(
            "INSERT OR IGNORE INTO join_meta (key, parts, first, fired, expires) VALUES (?, ?, ?, NULL, ?)",
            (key, part.parts, now, now + JOIN_TTL_SECONDS),
        )
        added = db.execute(
            "INSERT OR IGNORE INTO join_part (key, part, value) VALUES (?, ?, ?)",
            (key, part.index, value),
        ).rowcount
        first, fired = db.execute(
            "SELECT first, fired FROM join_meta WHERE key = ?", (key,)
        ).fetchone()

        def stored() -> dict[int, str]:
            rows = db.execute("SELECT part, value FROM join_part WHERE key = ?", (key,))
            return {int(p): v for p, v in rows}

        have = int(db.execute("SELECT COUNT(*) FROM join_part WHERE key = ?", (key,)).fetchone()[0])
        if fired is not None:
            if fired == firer:
                return Arrival("fire", have, _joined(part, stored()))
            return Arrival("late" if added else "duplicate", have)
        if have >= part.parts or self._expired(first, now):
            db.execute("UPDATE join_meta SET fired = ? WHERE key = ?", (firer, key))
            return Arrival("fire", have, _joined(part, stored()))
        return Arrival("collected" if added else "duplicate", have)

    def _expired(self, first: float, now: float) -> bool:
        return self.deadline is not None and now - first >= self.deadline

    # -- Redis: one Lua script -------------------------------------------------------------------

    async def _redis(self, key: str, part: Part, value: str, firer: str) -> Arrival:
        from rouse_runtime.store.redis import RedisStore, redis_call

        store = self.store
        assert isinstance(store, RedisStore)
        script = store.script(_ARRIVE)
        reply = await redis_call(
            "joins",
            store.url,
            "arrive",
            script(
                keys=[f"rouse:join:{key}:parts", f"rouse:join:{key}:meta"],
                args=[
                    part.index, value, part.parts, firer, time.time(),
                    -1 if self.deadline is None else self.deadline, int(JOIN_TTL_SECONDS),
                ],
            ),
        )  # fmt: skip
        kind, have = str(reply[0]), int(reply[1])
        if kind != "fire":
            return Arrival(kind, have)
        flat = reply[2]
        stored = {int(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}
        return Arrival("fire", have, _joined(part, stored))


_ARRIVE = """
local parts, meta = KEYS[1], KEYS[2]
redis.call('HSETNX', meta, 'first', ARGV[5])
local added = redis.call('HSETNX', parts, ARGV[1], ARGV[2])
redis.call('EXPIRE', parts, ARGV[7])
redis.call('EXPIRE', meta, ARGV[7])
local have = redis.call('HLEN', parts)
local fired = redis.call('HGET', meta, 'fired')
if fired then
  if fired == ARGV[4] then return {'fire', have, redis.call('HGETALL', parts)} end
  if added == 1 then return {'late', have} end
  return {'duplicate', have}
end
local first = tonumber(redis.call('HGET', meta, 'first'))
local expired = tonumber(ARGV[6]) >= 0 and tonumber(ARGV[5]) - first >= tonumber(ARGV[6])
if have >= tonumber(ARGV[3]) or expired then
  redis.call('HSET', meta, 'fired', ARGV[4])
  return {'fire', have, redis.call('HGETALL', parts)}
end
if added == 1 then return {'collected', have} end
return {'duplicate', have}
"""
