"""One SQLite file opened once and shared by threads: the state store, the ledger and
the parking queue each keep their tables in the state file and open it the same way.

The connection is opened on first use (directory made, WAL journal, schema
created) in autocommit mode, so a caller's explicit BEGIN/COMMIT is the only
transaction. sqlite3 errors become StoreError naming the file and what failed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from rouse_runtime.store.base import StoreError

T = TypeVar("T")

WAL_LIMIT_BYTES = 64 * 1024 * 1024  # an owner-checkpointed WAL is cut back to this


class SqliteFile:
    """A lazily opened connection to `path`, guarded by `lock` (reentrant).

    `label` names the user in errors ("state file", "ledger", ...);
    `synchronous` sets PRAGMA synchronous when given (else SQLite's default);
    `autocheckpoint=False`: this connection's commits never checkpoint the WAL
    (its owner checkpoints elsewhere, see `checkpoint`).
    """

    def __init__(
        self,
        path: str,
        schema: str,
        label: str,
        *,
        synchronous: str | None = None,
        autocheckpoint: bool = True,
    ) -> None:
        self.path = path
        self.lock = threading.RLock()  # re-entered by a sole writer's reads in its open transaction
        self._schema = schema
        self._label = label
        self._synchronous = synchronous
        self._autocheckpoint = autocheckpoint
        self._db: sqlite3.Connection | None = None

    def conn(self) -> sqlite3.Connection:
        """The open connection (opened now if need be); call with `lock` held."""
        if self._db is None:
            try:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=10.0
                )
                db.execute("PRAGMA journal_mode=WAL")
                if self._synchronous is not None:
                    db.execute(f"PRAGMA synchronous={self._synchronous}")
                if not self._autocheckpoint:
                    db.execute("PRAGMA wal_autocheckpoint=0")
                    db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
                db.executescript(self._schema)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open SQLite {self._label} {self.path!r}: {exc}") from exc
            self._db = db
        return self._db

    def error(self, what: str, exc: sqlite3.Error) -> StoreError:
        """The StoreError for a failed `what` (e.g. "read", "commit")."""
        return StoreError(f"SQLite {self._label} {self.path!r}: {what} failed: {exc}")

    def run(self, what: str, op: Callable[[sqlite3.Connection], T]) -> T:
        """op on the connection under the lock; a sqlite3 error becomes StoreError."""
        with self.lock:
            try:
                return op(self.conn())
            except sqlite3.Error as exc:
                raise self.error(what, exc) from exc

    def checkpoint(self) -> None:
        """Copy the WAL's committed pages into the file, on a connection of its own
        (from a worker thread).

        PASSIVE takes no write lock, so the writer goes on committing meanwhile; its
        fsyncs (synchronous=NORMAL syncs at checkpoints, not commits) block only the
        calling thread. Moving pages already committed changes no durability.
        """
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            raise self.error("checkpoint", exc) from exc
        finally:
            db.close()

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None
