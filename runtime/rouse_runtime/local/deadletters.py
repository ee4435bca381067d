"""The on-disk dead-letter store: events a skill failed after its retries.

SQLite under the state dir, so dead letters survive a restart of ``rouse dev``
and can be listed with the broker stopped (``rouse deadletters list``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time REAL NOT NULL,
  agent TEXT NOT NULL,
  skill TEXT NOT NULL,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  event TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  status INTEGER,
  reason TEXT NOT NULL,
  replayed_at REAL,
  replay_outcome TEXT
)
"""

FILE_NAME = "deadletters.db"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered delivery; ``event`` is the structured-mode CloudEvent dict."""

    id: int
    time: float
    agent: str
    skill: str
    event_id: str
    event_type: str
    event: dict[str, Any]
    attempts: int
    status: int | None
    reason: str
    replayed_at: float | None
    replay_outcome: str | None

    def as_json(self) -> dict[str, Any]:
        """JSON shape used by the broker API and the CLI."""
        return {
            "id": self.id,
            "time": self.time,
            "agent": self.agent,
            "skill": self.skill,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "event": self.event,
            "attempts": self.attempts,
            "status": self.status,
            "reason": self.reason,
            "replayedAt": self.replayed_at,
            "replayOutcome": self.replay_outcome,
        }


class DeadLetterStore:
    """Append, list and mark replayed; one short transaction per call."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / FILE_NAME
        with self._connect() as db:
            db.execute(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            with db:  # commits, or rolls back on error
                yield db
        finally:
            db.close()

    def add(
        self,
        *,
        agent: str,
        skill: str,
        event: dict[str, Any],
        attempts: int,
        status: int | None,
        reason: str,
    ) -> int:
        """Store a failed delivery; returns its id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO dead_letters (time, agent, skill, event_id, event_type, event, attempts, status, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    agent,
                    skill,
                    str(event.get("id", "")),
                    str(event.get("type", "")),
                    json.dumps(event),
                    attempts,
                    status,
                    reason,
                ),
            )
            return int(cursor.lastrowid or 0)

    def list(self, *, include_replayed: bool = True) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        query = "SELECT * FROM dead_letters"
        if not include_replayed:
            query += " WHERE replayed_at IS NULL"
        with self._connect() as db:
            return [_row(row) for row in db.execute(query + " ORDER BY id")]

    def get(self, letter_id: int) -> DeadLetter | None:
        """One dead letter by id."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM dead_letters WHERE id = ?", (letter_id,)).fetchone()
        return _row(row) if row else None

    def mark_replayed(self, letter_id: int, outcome: str) -> None:
        """Record that (and how) a dead letter was delivered again."""
        with self._connect() as db:
            db.execute(
                "UPDATE dead_letters SET replayed_at = ?, replay_outcome = ? WHERE id = ?",
                (time.time(), outcome, letter_id),
            )


def _row(row: sqlite3.Row) -> DeadLetter:
    return DeadLetter(
        id=int(row["id"]),
        time=float(row["time"]),
        agent=str(row["agent"]),
        skill=str(row["skill"]),
        event_id=str(row["event_id"]),
        event_type=str(row["event_type"]),
        event=json.loads(row["event"]),
        attempts=int(row["attempts"]),
        status=None if row["status"] is None else int(row["status"]),
        reason=str(row["reason"]),
        replayed_at=None if row["replayed_at"] is None else float(row["replayed_at"]),
        replay_outcome=row["replay_outcome"],
    )
