"""SQLite store: one file, safe for several processes on one machine (WAL mode).

Writes are group-committed: each write is queued and the queue is flushed in
one transaction on the next turn of the event loop, so under load a commit is
shared by every event in flight instead of paid per statement (the commit, not
the statement, is what costs). A writer awaits its batch's commit, so nothing
is reported done before it is durable. Reads run inline: short local queries
are cheaper than a thread hop. A claim is one upsert statement, atomic across
processes sharing the file.

The sole writer (the skill server) checkpoints the WAL in a worker thread every
CHECKPOINT_COMMITS commits instead of in the commit that crosses SQLite's
threshold (1000 pages): with synchronous=NORMAL a checkpoint is where the fsyncs
are, and on a disk they stalled the event loop for milliseconds (measured here:
commits slower than 2 ms, the checkpointing ones, took half or more of all
commits' time). Every RESTART_COMMITS commits one runs in the writer so that the
WAL starts over (and is cut back to WAL_LIMIT_BYTES) instead of growing.

Durability: WAL with synchronous=NORMAL. A commit is in the WAL file (the OS
page cache) before its writer hears "done", so it survives the process being
killed or crashing, which is what a pod's runtime faces; only a kernel crash or
power loss can drop the last commits (never corrupt the file). FULL would fsync
every group commit, several times the cost of the commit itself, for that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rouse_runtime.store.base import Claim, Store, StoreError
from rouse_runtime.store.sqlite_file import SqliteFile

T = TypeVar("T")

log = logging.getLogger("rouse.store")

# About SQLite's own autocheckpoint (1000 pages) at the few pages a group commit writes.
CHECKPOINT_COMMITS = 200
# A checkpoint racing the writer never reaches the WAL's end, and the WAL starts over only
# after one that did: every this many commits one runs in the writer, between transactions.
RESTART_COMMITS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
  ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires REAL,
  PRIMARY KEY (ns, key)
);
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL,
  record TEXT, expires REAL NOT NULL
);
"""
_KV = "kv"
_CHECKPOINT = "checkpoint"

Op = Callable[[sqlite3.Connection], Any]


class SqliteStore(Store):
    """The state file; `sole_writer`: this process writes the file through this store alone.

    A sole writer (the skill server) runs each write at once, inside a transaction
    begun by the turn's first write and committed at the end of the turn (the
    group commit): a claim's answer needs no trip through the event loop, and a
    quick skill's claim, result and ledger line share one transaction. Holding
    the write lock for the rest of a turn is safe only when no other connection
    of this thread writes the file (it would wait on that lock while blocking the
    loop that releases it), hence opt-in. Other processes wait at most a turn.
    """

    def __init__(self, path: str, *, sole_writer: bool = False) -> None:
        self.path = path
        self._file = SqliteFile(
            path, _SCHEMA, "state file", synchronous="NORMAL", autocheckpoint=not sole_writer
        )
        self._sole_writer = sole_writer
        self._commits = 0  # since the WAL last started over (sole writer)
        self._checkpoint: asyncio.Future[None] | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._open: sqlite3.Connection | None = None  # sole writer: this turn's transaction
        self._last_record: tuple[Any, str] | None = None

    def enqueue(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue op for the next group commit now; the future resolves once it is committed.

        Ops queued before the caller next yields to the loop commit in one
        transaction, so a crash keeps all of them or none (e.g. an idempotency
        result and its ledger line).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((op, future))
        self._schedule_flush(loop)
        return future

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """op's result once it is committed (a sole writer runs op at once, see the class)."""
        if not self._sole_writer:
            return await self.enqueue(op)
        value = self._now(op)
        return await self.enqueue(lambda db: value)  # resolved when this turn commits

    def _now(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """(sole writer) op inside this turn's transaction, begun now if need be."""
        db = self._open
        if db is None:
            self._file.lock.acquire()  # held until _flush commits, at the end of this turn
            try:
                db = self._file.conn()
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._file.lock.release()
                raise self._file.error("begin", exc) from exc
            except BaseException:
                self._file.lock.release()
                raise
            self._open = db
            self._schedule_flush(asyncio.get_running_loop())
        try:
            return op(db)
        except sqlite3.Error as exc:  # that statement is undone; the rest commit
            raise self._file.error("write", exc) from exc

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._flush_scheduled = False
        opened, self._open = self._open, None
        try:
            self._commit(batch, opened)
        finally:
            if opened is not None:
                self._file.lock.release()  # taken by _now when it began the transaction
        if self._sole_writer:
            self._commits += 1
            if self._commits >= RESTART_COMMITS:
                self._restart_wal()
            elif self._commits % CHECKPOINT_COMMITS == 0 and self._checkpoint is None:
                loop = asyncio.get_running_loop()
                self._checkpoint = loop.run_in_executor(None, self._file.checkpoint)
                self._checkpoint.add_done_callback(self._checkpoint_done)

    def _restart_wal(self) -> None:
        """Checkpoint to the WAL's end now (the worker's did most of it), so that the next
        transaction writes the WAL from its start; tried again at the next commit while
        the worker's checkpoint holds the checkpoint lock (SQLite answers busy at once)."""
        try:
            busy, frames, done = self._file.run(
                "checkpoint", lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            )
        except StoreError as exc:  # the WAL only grows meanwhile; nothing is lost
            log.warning("%s", exc)
            self._commits = 0
            return
        if not busy and frames == done:
            self._commits = 0

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("%s", future.exception())  # the next one retries (nothing is lost)

    def _commit(
        self, batch: list[tuple[Op, asyncio.Future[Any]]], db: sqlite3.Connection | None
    ) -> None:
        """Run batch's ops in a transaction (db's, already begun, or a new one) and commit."""
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        with self._file.lock:
            try:
                if db is None:
                    db = self._file.conn()
                    db.execute("BEGIN IMMEDIATE")
            except (StoreError, sqlite3.Error) as exc:
                begin_error = exc if isinstance(exc, StoreError) else self._file.error("begin", exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(begin_error)
                return
            for op, future in batch:
                try:
                    results.append((future, op(db), None))
                except sqlite3.Error as exc:  # that statement is undone; the rest commit
                    results.append((future, None, self._file.error("write", exc)))
                except Exception as exc:  # a bug must not leave the transaction open
                    results.append((future, None, exc))
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                failed = self._file.error("commit", exc)
                results = [(f, None, failed) for f, _, _ in results]
        for future, value, error in results:
            if future.done():
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def prepare(self) -> None:
        with contextlib.suppress(StoreError):
            self._file.run("open", lambda db: None)

    def _read(self, sql: str, args: tuple[Any, ...]) -> Any:
        return self._file.run("read", lambda db: db.execute(sql, args).fetchone())

    def _get(self, ns: str, key: str) -> Any:
        row = self._read("SELECT value, expires FROM kv WHERE ns = ? AND key = ?", (ns, key))
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return json.loads(row[0])

    async def _set(self, ns: str, key: str, value: Any, ttl: float | None) -> None:
        expires = None if ttl is None else time.time() + ttl
        text = json.dumps(value)
        await self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES (?, ?, ?, ?)",
                (ns, key, text, expires),
            )
        )

    async def get(self, key: str) -> Any:
        return self._get(_KV, key)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self._set(_KV, key, value, ttl)

    async def delete(self, key: str) -> bool:
        return await self._write(
            lambda db: (
                db.execute("DELETE FROM kv WHERE ns = ? AND key = ?", (_KV, key)).rowcount > 0
            )
        )

    async def save_checkpoint(self, key: str, value: Any) -> None:
        await self._set(_CHECKPOINT, key, value, None)

    async def load_checkpoint(self, key: str) -> Any:
        return self._get(_CHECKPOINT, key)

    async def claim(self, key: str, owner: str, lease: float) -> Claim:
        """A sole writer answers at once, without waiting for the commit: no other
        process can read the claim's key before this turn's transaction commits (it
        holds the write lock), and a claim lost to a crash only frees the key early."""

        def op(db: sqlite3.Connection) -> Claim:
            # Insert, or take over a claim whose lease ran out; else report what is there.
            now = time.time()
            taken = db.execute(
                "INSERT INTO idempotency (key, owner, state, record, expires)"
                " VALUES (?, ?, 'running', NULL, ?)"
                " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, state = 'running',"
                " record = NULL, expires = excluded.expires WHERE idempotency.expires <= ?",
                (key, owner, now + lease, now),
            ).rowcount
            if taken:
                return Claim("claimed")
            row = db.execute(
                "SELECT state, record FROM idempotency WHERE key = ?", (key,)
            ).fetchone()
            if row[0] == "done":
                return Claim("done", json.loads(row[1]))
            return Claim("busy")

        if self._sole_writer:
            return self._now(op)
        return await self._write(op)

    async def complete(self, key: str, owner: str, record: Any, ttl: float) -> bool:
        # Runs of a skill often store equal records (e.g. every "202, no reply"):
        # serialize once for a run of equal ones.
        last = self._last_record
        if last is not None and last[0] == record:
            text = last[1]
        else:
            text = json.dumps(record)
            self._last_record = (record, text)
        return await self._write(
            lambda db: (
                db.execute(
                    "UPDATE idempotency SET state = 'done', record = ?, expires = ?"
                    " WHERE key = ? AND owner = ? AND state = 'running'",
                    (text, time.time() + ttl, key, owner),
                ).rowcount
                > 0
            )
        )

    async def release(self, key: str, owner: str) -> bool:
        return await self._write(
            lambda db: (
                db.execute(
                    "DELETE FROM idempotency WHERE key = ? AND owner = ? AND state = 'running'",
                    (key, owner),
                ).rowcount
                > 0
            )
        )

    async def extend(self, key: str, owner: str, lease: float) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            now = time.time()
            return (
                db.execute(
                    "UPDATE idempotency SET expires = ? WHERE key = ? AND owner = ?"
                    " AND state = 'running' AND expires > ?",
                    (now + lease, key, owner, now),
                ).rowcount
                > 0
            )

        return await self._write(op)

    async def close(self) -> None:
        if self._pending or self._open is not None:
            self._flush()
        if self._checkpoint is not None:
            with contextlib.suppress(StoreError):  # logged by _checkpoint_done
                await self._checkpoint
        self._file.close()  # the last connection to close checkpoints what is left
