"""The spend ledger: exact per-skill counts that survive scale to zero.

A skill pod often lives shorter than a scrape interval, and `increase()` cannot
see what a counter held before its first scrape, so per-pod counters undercount
cold starts and spend. Instead each runtime adds every invocation (its cold
start, tokens and cost) to this ledger in the state store, in one atomic
statement, and a long-lived process (the parking service) exports the ledger's
totals as Prometheus counters plus today's (UTC) figures as gauges. The policies
read those: nothing is lost when a pod dies before it is scraped.

It lives beside the key/value store under the same `ROUSE_STATE_URL` (its own
SQLite table or Redis keys), because it needs atomic increments that the
key/value interface does not offer. On SQLite the runtime's lines ride the
store's group commit (`ledger_on`): one connection, and the same transaction as
the invocation's idempotency result, so a crash keeps both or neither. Cost is kept in integer nano-USD, so sums
are exact.
"""

from __future__ import annotations

import abc
import asyncio
import operator
import sqlite3
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from rouse_runtime.store import Store, sqlite_path, unsupported_url
from rouse_runtime.store.sqlite_file import SqliteFile

if TYPE_CHECKING:
    from rouse_runtime.store.sqlite import SqliteStore

NANO = 1_000_000_000


def nano_usd(cost_usd: float) -> int:
    """USD as integer nano-USD (exact sums; a token at $0.15/1M is 150 nano-USD)."""
    return round(cost_usd * NANO)


@dataclass(frozen=True)
class Entry:
    """What one invocation adds to its skill's line."""

    invocations: int = 1
    cold_starts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nano_usd: int = 0
    # Tokens of calls whose model has no known price (prices.py): counted at 0 USD.
    unpriced_tokens: int = 0

    @staticmethod
    def invocation(
        *, cold_start: bool, input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0
    ) -> Entry:
        """One invocation's line."""
        return Entry(1, 1 if cold_start else 0, input_tokens, output_tokens, nano_usd(cost_usd))


@dataclass(frozen=True)
class Line:
    """A skill's totals since the ledger began, and for one UTC day."""

    namespace: str
    agent: str
    skill: str
    invocations: int
    cold_starts: int
    input_tokens: int
    output_tokens: int
    cost_nano_usd: int
    day: str
    tokens_day: int
    cost_nano_usd_day: int
    unpriced_tokens_day: int = 0


def _line(
    namespace: str, agent: str, skill: str, counters: list[int], day: str, daily: list[int]
) -> Line:
    invocations, cold_starts, input_tokens, output_tokens, cost = counters[:5]
    tokens_day, cost_day, unpriced_day = daily
    return Line(
        namespace, agent, skill, invocations, cold_starts, input_tokens, output_tokens, cost,
        day, tokens_day, cost_day, unpriced_day,
    )  # fmt: skip


def utc_day(now: datetime | None = None) -> str:
    """The ledger's day key, e.g. `2026-01-05` (budgets reset at 00:00 UTC)."""
    return (now or datetime.now(UTC)).astimezone(UTC).date().isoformat()


class Ledger(abc.ABC):
    """Atomic, durable counters per (namespace, agent, skill, UTC day)."""

    @abc.abstractmethod
    async def add(
        self, namespace: str, agent: str, skill: str, entry: Entry, *, day: str | None = None
    ) -> None:
        """Add an invocation's figures atomically (safe across processes)."""

    def stage(
        self, namespace: str, agent: str, skill: str, entry: Entry, *, day: str | None = None
    ) -> Awaitable[None]:
        """Start adding entry; await the result for it to be durable.

        A backend sharing the state store's group commit queues it at once, so it
        commits in one transaction with the store writes queued next (the
        runtime's idempotency result); others add when awaited.
        """
        return self.add(namespace, agent, skill, entry, day=day)

    @abc.abstractmethod
    async def lines(self, *, day: str | None = None) -> list[Line]:
        """Every skill's totals, with `day`'s (default today UTC) figures."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    async def record(
        self,
        agent: str,
        skill: str,
        *,
        cold_start: bool,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        namespace: str,
    ) -> None:
        """Add one invocation now; the runtime uses `stage`."""
        entry = Entry.invocation(
            cold_start=cold_start,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
        )
        await self.add(namespace, agent, skill, entry)


def open_ledger(url: str) -> Ledger:
    """The ledger living in the state store a state URL names."""
    if url.startswith("sqlite://"):
        return SqliteLedger(sqlite_path(url))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLedger(url)
    raise unsupported_url(url)


def ledger_on(store: Store, url: str) -> Ledger:
    """The ledger beside an open state store; on SQLite it joins the store's group commit.

    One connection and one transaction per loop turn for the idempotency records
    and the ledger lines, instead of a second connection writing the same file.
    """
    from rouse_runtime.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteLedger(store.path, store=store)
    return ledger_for(url)


_opened: dict[str, Ledger] = {}


def ledger_for(url: str) -> Ledger:
    """The process's ledger for a state URL, opened on first use."""
    if url not in _opened:
        _opened[url] = open_ledger(url)
    return _opened[url]


_COUNTERS = (
    "invocations", "cold_starts", "input_tokens", "output_tokens", "cost_nano_usd",
    "unpriced_tokens",
)  # fmt: skip

_SQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
  ns TEXT NOT NULL, agent TEXT NOT NULL, skill TEXT NOT NULL, day TEXT NOT NULL,
  invocations INTEGER NOT NULL DEFAULT 0, cold_starts INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
  cost_nano_usd INTEGER NOT NULL DEFAULT 0,
  unpriced_tokens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ns, agent, skill, day)
);
"""
_SQL_ADD = """
INSERT INTO ledger (ns, agent, skill, day, invocations, cold_starts, input_tokens,
                    output_tokens, cost_nano_usd, unpriced_tokens)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ns, agent, skill, day) DO UPDATE SET
  invocations = invocations + excluded.invocations,
  cold_starts = cold_starts + excluded.cold_starts,
  input_tokens = input_tokens + excluded.input_tokens,
  output_tokens = output_tokens + excluded.output_tokens,
  cost_nano_usd = cost_nano_usd + excluded.cost_nano_usd,
  unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens
"""
_SQL_LINES = """
SELECT ns, agent, skill, SUM(invocations), SUM(cold_starts), SUM(input_tokens),
       SUM(output_tokens), SUM(cost_nano_usd),
       SUM(CASE WHEN day = ?1 THEN input_tokens + output_tokens ELSE 0 END),
       SUM(CASE WHEN day = ?1 THEN cost_nano_usd ELSE 0 END),
       SUM(CASE WHEN day = ?1 THEN unpriced_tokens ELSE 0 END)
FROM ledger GROUP BY ns, agent, skill ORDER BY ns, agent, skill
"""


def _values(
    namespace: str, agent: str, skill: str, entry: Entry, day: str | None
) -> tuple[str | int, ...]:
    return (
        namespace, agent, skill, day or utc_day(),
        entry.invocations, entry.cold_starts, entry.input_tokens, entry.output_tokens,
        entry.cost_nano_usd, entry.unpriced_tokens,
    )  # fmt: skip


def _create_table(db: sqlite3.Connection) -> None:
    db.execute(_SQL_SCHEMA)
    _add_missing_columns(db)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A ledger table made before `unpriced_tokens` existed gets the column (0 so far)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(ledger)")}
    if "unpriced_tokens" not in columns:
        db.execute("ALTER TABLE ledger ADD COLUMN unpriced_tokens INTEGER NOT NULL DEFAULT 0")


class SqliteLedger(Ledger):
    """The ledger as a table in the SQLite state file (one upsert per invocation).

    Given the runtime's `SqliteStore`, adds go through the store's group commit
    (its connection, its transaction); reads keep their own connection.
    """

    def __init__(self, path: str, *, store: SqliteStore | None = None) -> None:
        self.path = path
        self._file = SqliteFile(path, _SQL_SCHEMA, "ledger", synchronous="NORMAL")
        self._store = store
        self._schema_queued = False
        # Lines staged for the store's next group commit, and that commit's future.
        self._batch: dict[tuple[str, str, str, str], tuple[int, ...]] | None = None
        self._batch_added: asyncio.Future[None] | None = None

    def stage(
        self, namespace: str, agent: str, skill: str, entry: Entry, *, day: str | None = None
    ) -> Awaitable[None]:
        store = self._store
        if store is None:
            return self.add(namespace, agent, skill, entry, day=day)
        if not self._schema_queued:
            self._schema_queued = True  # ops of one batch run in order: the table comes first
            store.enqueue(_create_table).add_done_callback(self._schema_done)
        if self._batch is None or self._batch_added is None:
            # One upsert per line per group commit, however many invocations it holds.
            self._batch = {}
            self._batch_added = store.enqueue(self._add_batch)
        line = (namespace, agent, skill, day or utc_day())
        add = (
            entry.invocations,
            entry.cold_starts,
            entry.input_tokens,
            entry.output_tokens,
            entry.cost_nano_usd,
            entry.unpriced_tokens,
        )  # fmt: skip  (the order of _COUNTERS)
        counts = self._batch.get(line)
        self._batch[line] = add if counts is None else tuple(map(operator.add, counts, add))
        return self._batch_added

    def _add_batch(self, db: sqlite3.Connection) -> None:
        batch, self._batch, self._batch_added = self._batch or {}, None, None
        db.executemany(_SQL_ADD, [(*line, *counts) for line, counts in batch.items()])

    def _schema_done(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._schema_queued = False  # try again with the next add

    async def add(
        self, namespace: str, agent: str, skill: str, entry: Entry, *, day: str | None = None
    ) -> None:
        if self._store is not None:
            await self.stage(namespace, agent, skill, entry, day=day)
            return
        values = _values(namespace, agent, skill, entry, day)

        def add(db: sqlite3.Connection) -> None:
            _add_missing_columns(db)
            db.execute(_SQL_ADD, values)

        self._file.run("add", add)

    async def lines(self, *, day: str | None = None) -> list[Line]:
        today = day or utc_day()

        def read(db: sqlite3.Connection) -> list[Any]:
            _add_missing_columns(db)
            return db.execute(_SQL_LINES, (today,)).fetchall()

        rows = self._file.run("read", read)
        return [
            _line(
                row[0],
                row[1],
                row[2],
                [int(v) for v in row[3:8]],
                today,
                [int(row[8]), int(row[9]), int(row[10])],
            )
            for row in rows
        ]

    async def close(self) -> None:
        self._file.close()


_R_INDEX = "rouse:ledger:index"
_R_TOTAL = "rouse:ledger:total:"
_R_DAY = "rouse:ledger:day:"
_DAY_TTL_SECONDS = 3 * 24 * 3600


class RedisLedger(Ledger):
    """The ledger as Redis hashes: all-time and per-day, bumped in one MULTI."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self._redis: Any = aioredis.from_url(url, decode_responses=True)

    async def add(
        self, namespace: str, agent: str, skill: str, entry: Entry, *, day: str | None = None
    ) -> None:
        from rouse_runtime.store.redis import redis_call

        line = f"{namespace}|{agent}|{skill}"
        day_key = f"{_R_DAY}{day or utc_day()}:{line}"

        async def add() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                for counter in _COUNTERS:
                    amount = getattr(entry, counter)
                    pipe.hincrby(_R_TOTAL + line, counter, amount)
                    pipe.hincrby(day_key, counter, amount)
                pipe.expire(day_key, _DAY_TTL_SECONDS)
                pipe.sadd(_R_INDEX, line)
                await pipe.execute()

        await redis_call("ledger", self.url, "add", add())

    async def lines(self, *, day: str | None = None) -> list[Line]:
        from rouse_runtime.store.redis import redis_call

        today = day or utc_day()

        async def read() -> tuple[list[str], list[Any]]:
            names = sorted(await self._redis.smembers(_R_INDEX))
            async with self._redis.pipeline(transaction=False) as pipe:
                for line in names:
                    pipe.hgetall(_R_TOTAL + line)
                    pipe.hgetall(f"{_R_DAY}{today}:{line}")
                return names, await pipe.execute()

        names, replies = await redis_call("ledger", self.url, "read", read())
        result = []
        for index, line in enumerate(names):
            total, daily = replies[2 * index], replies[2 * index + 1]
            namespace, agent, skill = line.split("|")
            result.append(
                _line(
                    namespace,
                    agent,
                    skill,
                    [int(total.get(c, 0)) for c in _COUNTERS],
                    today,
                    [
                        int(daily.get("input_tokens", 0)) + int(daily.get("output_tokens", 0)),
                        int(daily.get("cost_nano_usd", 0)),
                        int(daily.get("unpriced_tokens", 0)),
                    ],
                )
            )
        return result

    async def close(self) -> None:
        await self._redis.aclose()


class _LinesCollector(Collector):
    def __init__(self, lines: Iterable[Line], day: str) -> None:
        self._lines = list(lines)
        self._day = day

    def collect(self) -> Iterable[Metric]:
        keys = ["namespace", "agent", "skill"]
        invocations = CounterMetricFamily(
            "rouse_ledger_invocations", "Invocations recorded in the ledger", labels=keys
        )
        cold = CounterMetricFamily(
            "rouse_ledger_cold_starts", "Cold starts recorded in the ledger", labels=keys
        )
        tokens = CounterMetricFamily(
            "rouse_ledger_tokens", "LLM tokens recorded in the ledger", labels=[*keys, "kind"]
        )
        cost = CounterMetricFamily(
            "rouse_ledger_cost_usd", "LLM cost (USD) recorded in the ledger", labels=keys
        )
        tokens_day = GaugeMetricFamily(
            "rouse_ledger_tokens_today", "Tokens since 00:00 UTC", labels=[*keys, "day"]
        )
        cost_day = GaugeMetricFamily(
            "rouse_ledger_cost_usd_today", "Cost (USD) since 00:00 UTC", labels=[*keys, "day"]
        )
        unpriced_day = GaugeMetricFamily(
            "rouse_ledger_unpriced_tokens_today",
            "Tokens since 00:00 UTC from models without a known price (counted at 0 USD)",
            labels=[*keys, "day"],
        )
        for line in self._lines:
            key = [line.namespace, line.agent, line.skill]
            invocations.add_metric(key, line.invocations)
            cold.add_metric(key, line.cold_starts)
            tokens.add_metric([*key, "input"], line.input_tokens)
            tokens.add_metric([*key, "output"], line.output_tokens)
            cost.add_metric(key, line.cost_nano_usd / NANO)
            tokens_day.add_metric([*key, line.day], line.tokens_day)
            cost_day.add_metric([*key, line.day], line.cost_nano_usd_day / NANO)
            unpriced_day.add_metric([*key, line.day], line.unpriced_tokens_day)
        # Present whenever the exporter is: tells "no spend today" from "no exporter".
        day_info = GaugeMetricFamily(
            "rouse_ledger_day_info", "The UTC day the *_today figures are for", labels=["day"]
        )
        day_info.add_metric([self._day], 1)
        yield from (invocations, cold, tokens, cost, tokens_day, cost_day, unpriced_day, day_info)


def ledger_registry(lines: Iterable[Line], day: str) -> CollectorRegistry:
    """A registry exposing the ledger's lines read for `day` (one per scrape, fresh read)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LinesCollector(lines, day))
    return registry
