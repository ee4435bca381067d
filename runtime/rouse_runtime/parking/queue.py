"""Durable, ordered storage of parked and dead-lettered CloudEvents.

Lives under the same `ROUSE_STATE_URL` as the runtime's state (its own SQLite
table or Redis keys): it needs an ordered append and a uniqueness check that
the key/value interface does not offer. A redelivery of the same event
(`source`, `id`) to the same sink is stored once, so a sink retry never
duplicates an event; order is the order of first arrival.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Literal

from rouse_runtime.store import sqlite_path, unsupported_url
from rouse_runtime.store.sqlite_file import SqliteFile

Kind = Literal["park", "dead-letter"]
# What makes a stored event unique: (kind, namespace, agent, skill, source, event id).
Identity = tuple[Kind, str, str, str, str, str]
# What the counts are per: (namespace, agent, skill, kind).
Line = tuple[str, str, str, str]


@dataclass(frozen=True)
class Parked:
    """One stored event; `event` is its structured-mode JSON text."""

    id: int
    kind: Kind
    namespace: str
    agent: str
    skill: str
    source: str
    event_id: str
    parked_at: float
    event: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "namespace": self.namespace,
            "agent": self.agent,
            "skill": self.skill,
            "source": self.source,
            "eventId": self.event_id,
            "parkedAt": self.parked_at,
            "event": json.loads(self.event),
        }


@dataclass(frozen=True)
class Filter:
    """Which stored events an operation acts on (None: any)."""

    namespace: str | None = None
    agent: str | None = None
    kind: Kind | None = None
    ids: tuple[int, ...] | None = None

    def matches(self, item: Parked) -> bool:
        return (
            (self.namespace is None or item.namespace == self.namespace)
            and (self.agent is None or item.agent == self.agent)
            and (self.kind is None or item.kind == self.kind)
            and (self.ids is None or item.id in self.ids)
        )


class ParkingQueue(abc.ABC):
    async def append(
        self,
        kind: Kind,
        namespace: str,
        agent: str,
        skill: str,
        source: str,
        event_id: str,
        event: str,
    ) -> bool:
        """Store an event at the end; False when this sink already holds it."""
        identity = (kind, namespace, agent, skill, source, event_id)
        return await self._append(identity, time.time(), event)

    @abc.abstractmethod
    async def _append(self, identity: Identity, parked_at: float, event: str) -> bool:
        """Store `event` under `identity` unless it is held already (atomically)."""

    @abc.abstractmethod
    async def items(
        self, where: Filter = Filter(), *, after: int = 0, limit: int | None = None
    ) -> list[Parked]:
        """Stored events matching `where` with an id above `after`, oldest first, at most
        `limit` (None: all; callers that serve or replay pass a page size)."""

    @abc.abstractmethod
    async def counts(self) -> dict[Line, int]:
        """How many events each (namespace, agent, skill, kind) holds: no event body read."""

    async def count(self, where: Filter = Filter()) -> int:
        """How many events match `where` (from `counts`, or the listed ids)."""
        if where.ids is not None:
            return len(await self.items(where))
        return sum(
            n
            for (namespace, agent, _, kind), n in (await self.counts()).items()
            if (where.namespace is None or namespace == where.namespace)
            and (where.agent is None or agent == where.agent)
            and (where.kind is None or kind == where.kind)
        )

    @abc.abstractmethod
    async def remove(self, ids: list[int]) -> int:
        """Delete events by id; how many existed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


def open_queue(url: str) -> ParkingQueue:
    """The parking queue in the state store a state URL names."""
    if url.startswith("sqlite://"):
        return SqliteQueue(sqlite_path(url))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisQueue(url)
    raise unsupported_url(url)


_SQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS parked (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL, ns TEXT NOT NULL, agent TEXT NOT NULL, skill TEXT NOT NULL,
  source TEXT NOT NULL, event_id TEXT NOT NULL, parked_at REAL NOT NULL, event TEXT NOT NULL,
  UNIQUE (kind, ns, agent, skill, source, event_id)
);
CREATE INDEX IF NOT EXISTS parked_by_agent ON parked (ns, agent, kind, id);
"""


class SqliteQueue(ParkingQueue):
    def __init__(self, path: str) -> None:
        self.path = path
        self._file = SqliteFile(path, _SQL_SCHEMA, "parking queue")

    def _run(self, what: str, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._file.run(what, lambda db: db.execute(sql, args))

    async def _append(self, identity: Identity, parked_at: float, event: str) -> bool:
        cur = self._run(
            "append",
            "INSERT OR IGNORE INTO parked (kind, ns, agent, skill, source, event_id, parked_at,"
            " event) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*identity, parked_at, event),
        )
        return cur.rowcount > 0

    async def items(
        self, where: Filter = Filter(), *, after: int = 0, limit: int | None = None
    ) -> list[Parked]:
        conditions: list[str] = ["id > ?"]
        args: list[Any] = [after]
        for column, value in (
            ("ns", where.namespace),
            ("agent", where.agent),
            ("kind", where.kind),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                args.append(value)
        if where.ids is not None:
            conditions.append(f"id IN ({','.join('?' * len(where.ids))})")
            args.extend(where.ids)
        sql = (
            "SELECT id, kind, ns, agent, skill, source, event_id, parked_at, event FROM parked"
            f" WHERE {' AND '.join(conditions)} ORDER BY id"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Parked(*row) for row in self._run("list", sql, tuple(args)).fetchall()]

    async def counts(self) -> dict[Line, int]:
        rows = self._run(
            "count", "SELECT ns, agent, skill, kind, COUNT(*) FROM parked GROUP BY 1, 2, 3, 4"
        ).fetchall()
        return {(r[0], r[1], r[2], r[3]): int(r[4]) for r in rows}

    async def remove(self, ids: list[int]) -> int:
        removed = 0
        for item_id in ids:
            removed += self._run("remove", "DELETE FROM parked WHERE id = ?", (item_id,)).rowcount
        return removed

    async def close(self) -> None:
        self._file.close()


_R_SEQ = "rouse:parked:seq"
_R_ORDER = "rouse:parked:order"
_R_ITEM = "rouse:parked:item:"
_R_SEEN = "rouse:parked:seen"
_R_AGENT_ORDER = "rouse:parked:order:"  # + namespace|agent: one agent's events, in order
_R_COUNTS = "rouse:parked:counts"  # field: JSON [namespace, agent, skill, kind]
# Take the next sequence number and store the item only if its identity is new: atomic.
_R_APPEND = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('SET', ARGV[3] .. id, ARGV[2])
redis.call('ZADD', KEYS[3], id, id)
redis.call('ZADD', KEYS[4], id, id)
redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
return id
"""
_R_REMOVE = """
local raw = redis.call('GET', ARGV[2] .. ARGV[1])
if not raw then return 0 end
local item = cjson.decode(raw)
redis.call('DEL', ARGV[2] .. ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', ARGV[3] .. item['namespace'] .. '|' .. item['agent'], ARGV[1])
redis.call('HDEL', KEYS[1], item['identity'])
local line = cjson.encode({item['namespace'], item['agent'], item['skill'], item['kind']})
if redis.call('HINCRBY', KEYS[3], line, -1) <= 0 then redis.call('HDEL', KEYS[3], line) end
return 1
"""
_R_PAGE = 200  # ids read per round trip while filtering


class RedisQueue(ParkingQueue):
    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self._redis: Any = aioredis.from_url(url, decode_responses=True)
        self._append_script = self._redis.register_script(_R_APPEND)
        self._remove_script = self._redis.register_script(_R_REMOVE)

    async def _call(self, what: str, coro: Any) -> Any:
        from rouse_runtime.store.redis import redis_call

        return await redis_call("parking queue", self.url, what, coro)

    async def _append(self, identity: Identity, parked_at: float, event: str) -> bool:
        kind, namespace, agent, skill, source, event_id = identity
        key = json.dumps([kind, namespace, agent, skill, source, event_id])
        record = {
            "identity": key,
            "kind": kind,
            "namespace": namespace,
            "agent": agent,
            "skill": skill,
            "source": source,
            "eventId": event_id,
            "parkedAt": parked_at,
            "event": event,
        }
        line = json.dumps([namespace, agent, skill, kind], separators=(",", ":"))
        stored = await self._call(
            "append",
            self._append_script(
                keys=[_R_SEEN, _R_SEQ, _R_ORDER, f"{_R_AGENT_ORDER}{namespace}|{agent}", _R_COUNTS],
                args=[key, json.dumps(record), _R_ITEM, line],
            ),
        )
        return bool(stored)

    async def items(
        self, where: Filter = Filter(), *, after: int = 0, limit: int | None = None
    ) -> list[Parked]:
        # One agent's own ordered index when the filter names it, else the global order.
        order = _R_ORDER
        if where.namespace is not None and where.agent is not None:
            order = f"{_R_AGENT_ORDER}{where.namespace}|{where.agent}"
        result: list[Parked] = []
        cursor = after
        while limit is None or len(result) < limit:
            if where.ids is not None:
                ids = [str(i) for i in sorted(where.ids) if i > cursor][:_R_PAGE]
            else:
                ids = await self._call(
                    "list",
                    self._redis.zrangebyscore(order, f"({cursor}", "+inf", start=0, num=_R_PAGE),
                )
            if not ids:
                break
            cursor = int(ids[-1])
            raws = await self._call("list", self._redis.mget([_R_ITEM + i for i in ids]))
            for item_id, raw in zip(ids, raws, strict=True):
                if raw is None:  # removed between the two reads
                    continue
                item = _parked(int(item_id), json.loads(raw))
                if where.matches(item):
                    result.append(item)
        return result if limit is None else result[:limit]

    async def counts(self) -> dict[Line, int]:
        raw = await self._call("count", self._redis.hgetall(_R_COUNTS))
        result: dict[Line, int] = {}
        for field, n in raw.items():
            namespace, agent, skill, kind = json.loads(field)
            if int(n) > 0:
                result[(namespace, agent, skill, kind)] = int(n)
        return result

    async def remove(self, ids: list[int]) -> int:
        removed = 0
        for item_id in ids:
            removed += int(
                await self._call(
                    "remove",
                    self._remove_script(
                        keys=[_R_SEEN, _R_ORDER, _R_COUNTS],
                        args=[str(item_id), _R_ITEM, _R_AGENT_ORDER],
                    ),
                )
            )
        return removed

    async def close(self) -> None:
        await self._redis.aclose()


def _parked(item_id: int, r: dict[str, Any]) -> Parked:
    return Parked(
        item_id,
        r["kind"],
        r["namespace"],
        r["agent"],
        r["skill"],
        r["source"],
        r["eventId"],
        float(r["parkedAt"]),
        r["event"],
    )
