"""The run log: append-only records per (namespace, agent, run) in the state store.

It lives beside the key/value store under the same `ROUSE_STATE_URL` (its own
SQLite tables or Redis keys), like the ledger, because it needs an ordered
append and a listing that the key/value interface does not offer.

The hot path (the runtime's records of each invocation) never pays a durable
write of its own: on SQLite `stage` joins the state store's group commit
(`runlog_on`), so an invocation's records commit in the transaction that
already holds its idempotency result and ledger line; on Redis the records of
one event-loop turn go out in one pipelined round trip, shared by every event
in flight. An invocation whose `started` and `finished` records fall into the
same commit is written as one `ran` record (no reader could have seen the first
alone). Everything else (the parking service, local mode's broker, the CLI)
appends directly.

Cancellation lives here too: `cancel` marks one run stopped, `kill` the whole
agent (a switch, on until lifted), and `stopped` reads both in one query, so a
runtime can check an incoming event against them from a cache.

Retention: a run whose last record is older than `retention` seconds is
removed whole (never a run's head while its tail lives): Redis expires the
run's list and trims the index on every append; on SQLite a long-lived part
(local mode's broker, the parking service) calls `prune` now and then, never
the runtime's hot path.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rouse_runtime.store import Store, sqlite_path, unsupported_url
from rouse_runtime.store.sqlite_file import SqliteFile

if TYPE_CHECKING:
    from rouse_runtime.store.sqlite import SqliteStore

log = logging.getLogger("rouse.runs")

DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
PRUNE_EVERY_SECONDS = 300.0  # how often long-lived parts prune a SQLite run log
KILL_SWITCH = "*"  # the `run` of an agent-wide stop in the stop table / hash


_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs twice, per event
class Record:
    """One transition of a run, as appended; `seq` is its position in the run (read back)."""

    namespace: str
    agent: str
    run: str
    kind: str
    skill: str | None = None
    event: Mapping[str, str] | None = None  # type, id, source of the event it is about
    fields: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    seq: int = 0

    def body(self) -> str:
        """The stored form (JSON): everything but the key and the position."""
        return _ENCODE(
            {
                "kind": self.kind,
                "at": self.at,
                "skill": self.skill,
                "event": self.event,
                "fields": self.fields,
            }
        )

    def row_body(self) -> str:
        """The stored form in a SQLite row, whose columns hold the kind and time."""
        return _ENCODE([self.skill, self.event, self.fields])

    @staticmethod
    def load(namespace: str, agent: str, run: str, seq: int, body: str) -> Record:
        raw = json.loads(body)
        return Record(
            namespace,
            agent,
            run,
            str(raw["kind"]),
            raw.get("skill"),
            raw.get("event"),
            raw.get("fields") or {},
            float(raw["at"]),
            seq,
        )

    @staticmethod
    def from_row(
        namespace: str, agent: str, run: str, seq: int, at: float, kind: str, body: str
    ) -> Record:
        skill, event, fields = json.loads(body)
        return Record(namespace, agent, run, kind, skill, event, fields or {}, float(at), seq)

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "skill": self.skill,
            "event": dict(self.event) if self.event is not None else None,
            **dict(self.fields),
        }


@dataclass(frozen=True)
class RunKey:
    """A run in the listing: who it belongs to and when it last changed."""

    namespace: str
    agent: str
    run: str
    last_at: float


@dataclass(frozen=True)
class Stopped:
    """An agent's stopped runs and whether its kill switch is on (read together)."""

    runs: frozenset[str] = frozenset()
    killed: bool = False

    def covers(self, run: str) -> bool:
        return self.killed or run in self.runs

    def reason(self, run: str) -> str:
        return "kill switch" if self.killed else "run cancelled" if run in self.runs else ""


class Batch:
    """Records staged for one commit, with each invocation's `started` and `finished`
    folded into one `ran` record when both are in it."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._started: dict[tuple[str, str | None, Any], int] = {}

    def add(self, record: Record) -> None:
        kind = record.kind
        if kind == "finished":
            # The runtime hands both records the same event ref object: its identity is the step.
            index = self._started.pop((record.run, record.skill, id(record.event)), None)
            if index is not None:  # the staged `started` (only this batch holds it) becomes `ran`
                started = self.records[index]
                started.kind = "ran"
                started.fields = {**started.fields, **record.fields}
                return
        elif kind == "started":
            self._started[(record.run, record.skill, id(record.event))] = len(self.records)
        self.records.append(record)


class RunLog(abc.ABC):
    """Append-only run records, their listing, and the stop marks (see the module docstring)."""

    retention: float = DEFAULT_RETENTION_SECONDS

    @abc.abstractmethod
    async def append(self, records: Iterable[Record]) -> None:
        """Append records now (durable when this returns)."""

    def stage(self, record: Record) -> Awaitable[None]:
        """Start appending record; await the result for it to be durable.

        A backend batching with the state store queues it for the current group
        commit or round trip; the default appends when awaited.
        """
        return self.append([record])

    @abc.abstractmethod
    async def history(self, namespace: str, agent: str, run: str) -> list[Record]:
        """The run's records in append order (empty: unknown or expired)."""

    @abc.abstractmethod
    async def runs(
        self,
        *,
        namespace: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[RunKey]:
        """Runs with records since `since`, the most recently changed first."""

    @abc.abstractmethod
    async def stop(self, namespace: str, agent: str, run: str, by: str) -> bool:
        """Mark run (or KILL_SWITCH: the agent) stopped; False when it already was."""

    @abc.abstractmethod
    async def unstop(self, namespace: str, agent: str, run: str) -> bool:
        """Lift a stop mark (the kill switch); False when there was none."""

    @abc.abstractmethod
    async def stopped(self, namespace: str, agent: str) -> Stopped:
        """The agent's stopped runs and kill switch."""

    @abc.abstractmethod
    async def prune(self, now: float | None = None) -> int:
        """Remove runs idle for longer than the retention; how many."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    async def cancel(self, namespace: str, agent: str, run: str, by: str) -> bool:
        """Stop one run and record who did; False when it was cancelled already."""
        first = await self.stop(namespace, agent, run, by)
        if first:
            await self.append([Record(namespace, agent, run, "cancelled", fields={"by": by})])
        return first

    async def kill(self, namespace: str, agent: str, by: str, *, on: bool = True) -> bool:
        """Turn the agent's kill switch on (every event of it is dropped) or off."""
        if on:
            return await self.stop(namespace, agent, KILL_SWITCH, by)
        return await self.unstop(namespace, agent, KILL_SWITCH)


def open_runlog(url: str, *, retention: float = DEFAULT_RETENTION_SECONDS) -> RunLog:
    """The run log living in the state store a state URL names."""
    if url.startswith("sqlite://"):
        return SqliteRunLog(sqlite_path(url), retention=retention)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRunLog(url, retention=retention)
    raise unsupported_url(url)


def runlog_on(store: Store, url: str, *, retention: float = DEFAULT_RETENTION_SECONDS) -> RunLog:
    """The run log beside an open state store; on SQLite its writes join the store's group commit."""
    from rouse_runtime.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteRunLog(store.path, store=store, retention=retention)
    return open_runlog(url, retention=retention)


# -- SQLite -----------------------------------------------------------------------------------

_SQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_log (
  ns TEXT NOT NULL, agent TEXT NOT NULL, run TEXT NOT NULL,
  at REAL NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_stop (
  ns TEXT NOT NULL, agent TEXT NOT NULL, run TEXT NOT NULL, at REAL NOT NULL, by TEXT NOT NULL,
  PRIMARY KEY (ns, agent, run)
);
"""
_SQL_APPEND = "INSERT INTO run_log (ns, agent, run, at, kind, body) VALUES (?, ?, ?, ?, ?, ?)"
_SQL_PRUNE = """
DELETE FROM run_log WHERE (ns, agent, run) IN
  (SELECT ns, agent, run FROM run_log GROUP BY ns, agent, run HAVING MAX(at) < ?1)
"""


def _write(db: sqlite3.Connection, records: list[Record]) -> None:
    db.executemany(
        _SQL_APPEND, [(r.namespace, r.agent, r.run, r.at, r.kind, r.row_body()) for r in records]
    )


def _prune(db: sqlite3.Connection, cutoff: float) -> int:
    removed = db.execute(_SQL_PRUNE, (cutoff,)).rowcount
    # Cancel marks go with their runs; the kill switch stays until it is lifted.
    db.execute("DELETE FROM run_stop WHERE run != ? AND at < ?", (KILL_SWITCH, cutoff))
    return int(removed)


class SqliteRunLog(RunLog):
    """The run log as tables in the SQLite state file.

    No index: SQLite is local mode's store (the cluster's is Redis, a list per
    run), where reading a history scans a few days of one machine's events,
    while an index would be paid on every event (about a tenth of an event's
    CPU, measured with bench/runtime_throughput.py).

    Given the runtime's `SqliteStore`, `stage` goes through the store's group
    commit (one executemany per commit, however many records it holds); reads
    and direct appends use a connection of their own.
    """

    def __init__(
        self,
        path: str,
        *,
        store: SqliteStore | None = None,
        retention: float = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self.path = path
        self.retention = retention
        self._file = SqliteFile(path, _SQL_SCHEMA, "run log", synchronous="NORMAL")
        # Beside a sole-writer store, reads must never write: making the tables on this
        # connection would wait for the lock the store holds in this very thread.
        self._reader = SqliteFile(path, "", "run log") if store is not None else self._file
        self._store = store
        self._schema_queued = False
        self._batch: Batch | None = None
        self._batch_done: asyncio.Future[None] | None = None

    def stage(self, record: Record) -> Awaitable[None]:
        store = self._store
        if store is None:
            return self.append([record])
        if not self._schema_queued:
            self._schema_queued = True  # ops of a batch run in order: the tables come first
            store.enqueue(_create_tables).add_done_callback(self._schema_done)
        if self._batch is None or self._batch_done is None:
            self._batch = Batch()
            self._batch_done = store.enqueue(self._write_batch)
        self._batch.add(record)
        return self._batch_done

    def _write_batch(self, db: sqlite3.Connection) -> None:
        batch, self._batch, self._batch_done = self._batch, None, None
        if batch is not None:
            _write(db, batch.records)

    def _schema_done(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._schema_queued = False

    async def append(self, records: Iterable[Record]) -> None:
        batch = list(records)
        if not batch:
            return
        if self._store is not None:
            await asyncio.gather(*(self.stage(r) for r in batch))
            return

        def op(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                _write(db, batch)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        self._file.run("append", op)

    async def history(self, namespace: str, agent: str, run: str) -> list[Record]:
        rows = self._file.run(
            "read",
            lambda db: db.execute(
                "SELECT at, kind, body FROM run_log WHERE ns = ? AND agent = ? AND run = ?"
                " ORDER BY rowid",
                (namespace, agent, run),
            ).fetchall(),
        )
        return [Record.from_row(namespace, agent, run, i + 1, *row) for i, row in enumerate(rows)]

    async def runs(
        self,
        *,
        namespace: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[RunKey]:
        where: list[str] = ["at >= ?"]
        args: list[Any] = [since if since is not None else 0.0]
        if namespace is not None:
            where.append("ns = ?")
            args.append(namespace)
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        # A scan (no index on time: the hot path pays for none); listing is rare.
        sql = (
            f"SELECT ns, agent, run, MAX(at) AS last FROM run_log WHERE {' AND '.join(where)}"
            " GROUP BY ns, agent, run ORDER BY last DESC LIMIT ?"
        )
        rows = self._file.run("read", lambda db: db.execute(sql, (*args, limit)).fetchall())
        return [RunKey(r[0], r[1], r[2], float(r[3])) for r in rows]

    async def stop(self, namespace: str, agent: str, run: str, by: str) -> bool:
        return self._file.run(
            "stop",
            lambda db: (
                db.execute(
                    "INSERT OR IGNORE INTO run_stop (ns, agent, run, at, by) VALUES (?, ?, ?, ?, ?)",
                    (namespace, agent, run, time.time(), by),
                ).rowcount
                > 0
            ),
        )

    async def unstop(self, namespace: str, agent: str, run: str) -> bool:
        return self._file.run(
            "unstop",
            lambda db: (
                db.execute(
                    "DELETE FROM run_stop WHERE ns = ? AND agent = ? AND run = ?",
                    (namespace, agent, run),
                ).rowcount
                > 0
            ),
        )

    async def stopped(self, namespace: str, agent: str) -> Stopped:
        def read(db: sqlite3.Connection) -> list[Any]:
            try:
                return db.execute(
                    "SELECT run FROM run_stop WHERE ns = ? AND agent = ?", (namespace, agent)
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # nothing was ever stopped in this file
                    return []
                raise

        rows = self._reader.run("read", read)
        runs = {r[0] for r in rows}
        return Stopped(frozenset(runs - {KILL_SWITCH}), KILL_SWITCH in runs)

    async def prune(self, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - self.retention
        return self._file.run("prune", lambda db: _prune(db, cutoff))

    async def close(self) -> None:
        self._file.close()
        self._reader.close()


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in _SQL_SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


# -- Redis ------------------------------------------------------------------------------------

_R = "rouse:runs:"


def _agent_key(namespace: str, agent: str) -> str:
    return f"{namespace}|{agent}"


class RedisRunLog(RunLog):
    """The run log as Redis lists (one per run) and a sorted-set index per agent.

    `rouse:runs:log:<ns>|<agent>|<run>` is the run's list (RPUSH: arrival order,
    expiring `retention` after its last record); `rouse:runs:index:<ns>|<agent>`
    scores runs by their last record; `rouse:runs:agents` lists the agents;
    `rouse:runs:stop:<ns>|<agent>` is a hash of stopped runs (and `*`).
    """

    def __init__(self, url: str, *, retention: float = DEFAULT_RETENTION_SECONDS) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.retention = retention
        self._redis: Any = aioredis.from_url(url, decode_responses=True)
        self._batch: Batch | None = None
        self._batch_done: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _call(self, what: str, awaitable: Awaitable[Any]) -> Any:
        from rouse_runtime.store.redis import redis_call

        return await redis_call("run log", self.url, what, awaitable)

    def stage(self, record: Record) -> Awaitable[None]:
        if self._batch is None or self._batch_done is None:
            loop = asyncio.get_running_loop()
            self._batch = Batch()
            self._batch_done = loop.create_future()
            loop.call_soon(self._flush)
        self._batch.add(record)
        return self._batch_done

    def _flush(self) -> None:
        batch, done = self._batch.records if self._batch else [], self._batch_done
        self._batch, self._batch_done = None, None
        assert done is not None

        async def write() -> None:
            try:
                await self.append(batch)
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
                    done.exception()  # retrieved: nobody may be waiting
                return
            if not done.done():
                done.set_result(None)

        task = asyncio.get_running_loop().create_task(write())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def append(self, records: Iterable[Record]) -> None:
        batch = list(records)
        if not batch:
            return
        ttl = max(1, int(self.retention))
        cutoff = time.time() - self.retention

        async def write() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                agents: set[str] = set()
                for r in batch:
                    agent = _agent_key(r.namespace, r.agent)
                    run_key = f"{_R}log:{agent}|{r.run}"
                    pipe.rpush(run_key, r.body())
                    pipe.expire(run_key, ttl)
                    pipe.zadd(f"{_R}index:{agent}", {r.run: r.at})
                    agents.add(agent)
                for agent in agents:
                    pipe.zremrangebyscore(f"{_R}index:{agent}", "-inf", f"({cutoff}")
                    pipe.expire(f"{_R}index:{agent}", ttl)
                    pipe.sadd(f"{_R}agents", agent)
                await pipe.execute()

        await self._call("append", write())

    async def history(self, namespace: str, agent: str, run: str) -> list[Record]:
        key = f"{_R}log:{_agent_key(namespace, agent)}|{run}"
        bodies = await self._call("history", self._redis.lrange(key, 0, -1))
        return [Record.load(namespace, agent, run, i + 1, b) for i, b in enumerate(bodies)]

    async def runs(
        self,
        *,
        namespace: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[RunKey]:
        names = sorted(await self._call("runs", self._redis.smembers(f"{_R}agents")))
        found: list[RunKey] = []
        low = "-inf" if since is None else str(since)
        for name in names:
            ns, _, ag = name.partition("|")
            if (namespace is not None and ns != namespace) or (agent is not None and ag != agent):
                continue
            rows = await self._call(
                "runs",
                self._redis.zrevrangebyscore(
                    f"{_R}index:{name}", "+inf", low, start=0, num=limit, withscores=True
                ),
            )
            found += [RunKey(ns, ag, run, float(score)) for run, score in rows]
        found.sort(key=lambda k: k.last_at, reverse=True)
        return found[:limit]

    async def stop(self, namespace: str, agent: str, run: str, by: str) -> bool:
        value = json.dumps({"at": time.time(), "by": by})
        key = f"{_R}stop:{_agent_key(namespace, agent)}"
        return bool(await self._call("stop", self._redis.hsetnx(key, run, value)))

    async def unstop(self, namespace: str, agent: str, run: str) -> bool:
        key = f"{_R}stop:{_agent_key(namespace, agent)}"
        return bool(await self._call("unstop", self._redis.hdel(key, run)))

    async def stopped(self, namespace: str, agent: str) -> Stopped:
        key = f"{_R}stop:{_agent_key(namespace, agent)}"
        runs = set(await self._call("stopped", self._redis.hkeys(key)))
        return Stopped(frozenset(runs - {KILL_SWITCH}), KILL_SWITCH in runs)

    async def prune(self, now: float | None = None) -> int:
        # Lists expire by themselves; the indexes are trimmed here and on every append.
        cutoff = (now if now is not None else time.time()) - self.retention
        removed = 0
        for name in await self._call("prune", self._redis.smembers(f"{_R}agents")):
            removed += int(
                await self._call(
                    "prune",
                    self._redis.zremrangebyscore(f"{_R}index:{name}", "-inf", f"({cutoff}"),
                )
            )
        return removed

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
