"""SQLite store: one file, safe for several processes on one machine (WAL mode).

Calls are short local transactions, so they run inline on the event loop
instead of paying a thread hop per call; a claim is one upsert statement, atomic
across processes sharing the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import Any

from rouse_runtime.store.base import Claim, Store, StoreError

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


class SqliteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            directory = os.path.dirname(self.path)
            try:
                if directory:
                    os.makedirs(directory, exist_ok=True)
                db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=10.0
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open SQLite state file {self.path!r}: {exc}") from exc
            self._db = db
        return self._db

    def _get(self, ns: str, key: str) -> Any:
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT value, expires FROM kv WHERE ns = ? AND key = ?", (ns, key))
                .fetchone()
            )
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return json.loads(row[0])

    def _set(self, ns: str, key: str, value: Any, ttl: float | None) -> None:
        expires = None if ttl is None else time.time() + ttl
        with self._lock:
            self._conn().execute(
                "INSERT OR REPLACE INTO kv (ns, key, value, expires) VALUES (?, ?, ?, ?)",
                (ns, key, json.dumps(value), expires),
            )

    async def get(self, key: str) -> Any:
        return self._get(_KV, key)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._set(_KV, key, value, ttl)

    async def delete(self, key: str) -> bool:
        with self._lock:
            cur = self._conn().execute("DELETE FROM kv WHERE ns = ? AND key = ?", (_KV, key))
        return cur.rowcount > 0

    async def save_checkpoint(self, key: str, value: Any) -> None:
        self._set(_CHECKPOINT, key, value, None)

    async def load_checkpoint(self, key: str) -> Any:
        return self._get(_CHECKPOINT, key)

    async def claim(self, key: str, owner: str, lease: float) -> Claim:
        # One atomic statement: insert, or take over a claim whose lease ran out.
        now = time.time()
        with self._lock:
            db = self._conn()
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
        if row is None:  # deleted between the two statements: try again
            return await self.claim(key, owner, lease)
        if row[0] == "done":
            return Claim("done", json.loads(row[1]))
        return Claim("busy")

    async def complete(self, key: str, owner: str, record: Any, ttl: float) -> bool:
        with self._lock:
            cur = self._conn().execute(
                "UPDATE idempotency SET state = 'done', record = ?, expires = ?"
                " WHERE key = ? AND owner = ? AND state = 'running'",
                (json.dumps(record), time.time() + ttl, key, owner),
            )
        return cur.rowcount > 0

    async def release(self, key: str, owner: str) -> bool:
        with self._lock:
            cur = self._conn().execute(
                "DELETE FROM idempotency WHERE key = ? AND owner = ? AND state = 'running'",
                (key, owner),
            )
        return cur.rowcount > 0

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
