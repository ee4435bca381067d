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

The deadline without a further part: a join with a deadline is registered as
*due* (at its first part plus the deadline) in the same atomic step that stores
its first part, and unregistered in the step that fires it. The platform's
sweeper (runs/sweeper.py, in the parking service and so in `rouse dev`) reads
the joins due now (`due_joins`) and delivers the join skill a
`dev.rouse.join.deadline` event (`rousejoin`, `rouseparts`, no `rousepart`):
arriving past the deadline, it fires the join with what is in, once, like a
late part would; before the deadline (clocks apart) it is answered 409 and
sent again later.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent

from rouse_runtime.config import Config
from rouse_runtime.events import EventError
from rouse_runtime.runs.brokers import broker_name
from rouse_runtime.runs.ids import (
    JOIN_ATTRIBUTE,
    PART_ATTRIBUTE,
    PARTS_ATTRIBUTE,
    InvalidRunIdError,
    check_run_id,
)
from rouse_runtime.store import Store

if TYPE_CHECKING:
    import sqlite3

MAX_PARTS = 10_000
JOIN_TTL_SECONDS = 7 * 24 * 3600.0
DEADLINE_TYPE = "dev.rouse.join.deadline"  # the sweeper's event: the deadline passed
DUE_KEY = "rouse:join:due"  # Redis: the joins with a deadline not yet fired, scored by it


@dataclass(frozen=True)
class Part:
    """Which part of which join an event is (index None: the sweeper's deadline event)."""

    join: str
    index: int | None
    parts: int


@dataclass(frozen=True)
class Due:
    """A join whose deadline has passed, not fired: what the sweeper needs to end it."""

    key: str
    due: float
    about: dict[str, Any]  # namespace, agent, skill, join, parts, run, broker (None: default)


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
    """What adding a part did: `fire` (run the join now), or collected / duplicate / late;
    for the deadline event: `fire`, `early` (not due yet) or `ended` (fired already, or gone)."""

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
    if event["type"] == DEADLINE_TYPE and event.get(PART_ATTRIBUTE) is None:
        return Part(str(join), None, parts)
    return Part(str(join), _int(event, PART_ATTRIBUTE, 0, parts - 1), parts)


def join_about(config: Config, part: Part, run: str) -> dict[str, Any]:
    """What the sweeper needs to end a join of this skill at its deadline (a `Due`'s about)."""
    return {
        "namespace": config.namespace,
        "agent": config.agent,
        "skill": config.skill,
        "join": part.join,
        "parts": part.parts,
        "run": run,
        "broker": broker_name(config.broker_url, config.namespace),
    }


def _joined(part: Part, stored: dict[int, str]) -> Joined:
    results = [json.loads(stored[i]) if i in stored else None for i in range(part.parts)]
    return Joined(part.join, part.parts, results, [i for i in range(part.parts) if i not in stored])


class Joins:
    """The join state of one skill in the state store (SQLite group commit or Redis script)."""

    def __init__(self, store: Store, deadline: float | None) -> None:
        self.store = store
        self.deadline = deadline

    async def arrive(
        self, key: str, part: Part, event: CloudEvent, firer: str, about: dict[str, Any]
    ) -> Arrival:
        """Add event's data as `part` of the join stored under key (see the module docstring).

        `firer` names this delivery (its idempotency key): the same event retried
        after a failed join fires again. `about` is what the sweeper needs to end the
        join at its deadline (kept only when there is a deadline).
        """
        value = json.dumps(event.data, default=str)
        described = "" if self.deadline is None else json.dumps(about, separators=(",", ":"))
        from rouse_runtime.store.sqlite import SqliteStore

        if isinstance(self.store, SqliteStore):
            return await self.store.enqueue(
                lambda db: self._sqlite(db, key, part, value, firer, described, time.time())
            )
        return await self._redis(key, part, value, firer, described)

    # -- SQLite: one transaction of the store's group commit ---------------------------------

    def _sqlite(
        self,
        db: sqlite3.Connection,
        key: str,
        part: Part,
        value: str,
        firer: str,
        about: str,
        now: float,
    ) -> Arrival:
        _sqlite_tables(db)
        db.execute("DELETE FROM join_meta WHERE expires < ?", (now,))
        db.execute("DELETE FROM join_due WHERE due < ?", (now - JOIN_TTL_SECONDS,))
        if part.index is None:  # the deadline event: no part of its own
            row = db.execute("SELECT first, fired FROM join_meta WHERE key = ?", (key,)).fetchone()
            if row is None:  # expired, or never was
                db.execute("DELETE FROM join_due WHERE key = ?", (key,))
                return Arrival("ended", 0)
            added = 0
        else:
            created = db.execute(
                "INSERT OR IGNORE INTO join_meta (key, parts, first, fired, expires)"
                " VALUES (?, ?, ?, NULL, ?)",
                (key, part.parts, now, now + JOIN_TTL_SECONDS),
            ).rowcount
            if created and self.deadline is not None:
                db.execute(
                    "INSERT OR REPLACE INTO join_due (key, due, about) VALUES (?, ?, ?)",
                    (key, now + self.deadline, about),
                )
            added = db.execute(
                "INSERT OR IGNORE INTO join_part (key, part, value) VALUES (?, ?, ?)",
                (key, part.index, value),
            ).rowcount
            row = db.execute("SELECT first, fired FROM join_meta WHERE key = ?", (key,)).fetchone()
        first, fired = row

        def stored() -> dict[int, str]:
            rows = db.execute("SELECT part, value FROM join_part WHERE key = ?", (key,))
            return {int(p): v for p, v in rows}

        have = int(db.execute("SELECT COUNT(*) FROM join_part WHERE key = ?", (key,)).fetchone()[0])
        if fired is not None:
            if fired == firer:
                return Arrival("fire", have, _joined(part, stored()))
            if part.index is None:
                return Arrival("ended", have)
            return Arrival("late" if added else "duplicate", have)
        if have >= part.parts or self._expired(first, now):
            db.execute("UPDATE join_meta SET fired = ? WHERE key = ?", (firer, key))
            db.execute("DELETE FROM join_due WHERE key = ?", (key,))
            return Arrival("fire", have, _joined(part, stored()))
        if part.index is None:
            return Arrival("early", have)
        return Arrival("collected" if added else "duplicate", have)

    def _expired(self, first: float, now: float) -> bool:
        return self.deadline is not None and now - first >= self.deadline

    # -- Redis: one Lua script -------------------------------------------------------------------

    async def _redis(self, key: str, part: Part, value: str, firer: str, about: str) -> Arrival:
        reply = await _redis_script(
            self.store,
            _ARRIVE,
            "arrive",
            keys=[f"rouse:join:{key}:parts", f"rouse:join:{key}:meta", DUE_KEY],
            args=[
                -1 if part.index is None else part.index, value, part.parts, firer, time.time(),
                -1 if self.deadline is None else self.deadline, int(JOIN_TTL_SECONDS), key, about,
            ],
        )  # fmt: skip
        kind, have = str(reply[0]), int(reply[1])
        if kind != "fire":
            return Arrival(kind, have)
        flat = reply[2]
        stored = {int(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}
        return Arrival("fire", have, _joined(part, stored))


def _sqlite_tables(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS join_part (key TEXT NOT NULL, part INTEGER NOT NULL,"
        " value TEXT NOT NULL, PRIMARY KEY (key, part))"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS join_meta (key TEXT PRIMARY KEY, parts INTEGER NOT NULL,"
        " first REAL NOT NULL, fired TEXT, expires REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS join_due (key TEXT PRIMARY KEY, due REAL NOT NULL,"
        " about TEXT NOT NULL)"
    )


async def _redis_script(store: Store, source: str, what: str, **call: Any) -> Any:
    from rouse_runtime.store.redis import RedisStore, redis_call

    assert isinstance(store, RedisStore)
    return await redis_call("joins", store.url, what, store.script(source)(**call))


async def due_joins(store: Store, now: float, limit: int = 100) -> list[Due]:
    """Joins whose deadline is past at `now` and that have not fired, the most overdue first."""
    from rouse_runtime.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):

        def read(db: sqlite3.Connection) -> list[Any]:
            _sqlite_tables(db)
            return db.execute(
                "SELECT key, due, about FROM join_due WHERE due <= ? ORDER BY due LIMIT ?",
                (now, limit),
            ).fetchall()

        rows = await store.enqueue(read)
    else:
        flat = await _redis_script(store, _DUE, "due", keys=[DUE_KEY], args=[now, limit])
        rows = [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]
    return [Due(str(key), float(due), json.loads(about)) for key, due, about in rows if about]


async def forget_due(store: Store, key: str) -> None:
    """The join under key is no longer due (ended at its deadline, or gone)."""
    from rouse_runtime.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):

        def forget(db: sqlite3.Connection) -> None:
            _sqlite_tables(db)
            db.execute("DELETE FROM join_due WHERE key = ?", (key,))

        await store.enqueue(forget)
    else:
        await _redis_script(store, _FORGET, "forget", keys=[DUE_KEY], args=[key])


# KEYS: parts, meta, due. ARGV: part (-1: the deadline event), value, parts, firer, now,
# deadline (-1: none), ttl, key, about.
_ARRIVE = """
local parts, meta, due = KEYS[1], KEYS[2], KEYS[3]
local tick = tonumber(ARGV[1]) < 0
local added = 0
if tick then
  if redis.call('EXISTS', meta) == 0 then
    redis.call('ZREM', due, ARGV[8])
    return {'ended', 0}
  end
else
  if redis.call('HSETNX', meta, 'first', ARGV[5]) == 1 and tonumber(ARGV[6]) >= 0 then
    redis.call('HSET', meta, 'about', ARGV[9])
    redis.call('ZADD', due, tonumber(ARGV[5]) + tonumber(ARGV[6]), ARGV[8])
  end
  added = redis.call('HSETNX', parts, ARGV[1], ARGV[2])
  redis.call('EXPIRE', parts, ARGV[7])
  redis.call('EXPIRE', meta, ARGV[7])
end
local have = redis.call('HLEN', parts)
local fired = redis.call('HGET', meta, 'fired')
if fired then
  if fired == ARGV[4] then return {'fire', have, redis.call('HGETALL', parts)} end
  if tick then return {'ended', have} end
  if added == 1 then return {'late', have} end
  return {'duplicate', have}
end
local first = tonumber(redis.call('HGET', meta, 'first'))
local expired = tonumber(ARGV[6]) >= 0 and tonumber(ARGV[5]) - first >= tonumber(ARGV[6])
if have >= tonumber(ARGV[3]) or expired then
  redis.call('HSET', meta, 'fired', ARGV[4])
  redis.call('ZREM', due, ARGV[8])
  return {'fire', have, redis.call('HGETALL', parts)}
end
if tick then return {'early', have} end
if added == 1 then return {'collected', have} end
return {'duplicate', have}
"""

# KEYS: due. ARGV: now, limit. Returns key, due, about (empty: the join is gone) per due join.
_DUE = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #found, 2 do
  local about = redis.call('HGET', 'rouse:join:' .. found[i] .. ':meta', 'about')
  if not about then
    redis.call('ZREM', KEYS[1], found[i])
    about = ''
  end
  table.insert(out, found[i])
  table.insert(out, found[i + 1])
  table.insert(out, about)
end
return out
"""

_FORGET = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
