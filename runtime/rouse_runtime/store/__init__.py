"""Durable state behind one interface: key/value, checkpoints, idempotency records.

`open_store(url)` picks the backend from `ROUSE_STATE_URL`: `sqlite:///path` (the
embedded default) or `redis://host:port/db` (shared by every pod of a skill, so
duplicates are claimed once across processes). Backends are imported only when
chosen, so the redis client costs nothing at start-up unless it is used.
"""

from __future__ import annotations

from rouse_runtime.store.base import Claim, Store, StoreError


def open_store(url: str) -> Store:
    """The store a state URL names; raises StoreError for an unknown scheme."""
    if url.startswith("sqlite://"):
        from rouse_runtime.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from rouse_runtime.store.redis import RedisStore

        return RedisStore(url)
    raise unsupported_url(url)


def unsupported_url(url: str) -> StoreError:
    """The error for a state URL of no known scheme (shared by the store, ledger and queue)."""
    return StoreError(f"unsupported state URL {url!r}: expected sqlite:///path or redis://...")


def sqlite_path(url: str) -> str:
    """`sqlite:///tmp/x.db` → `/tmp/x.db`; `sqlite:////tmp/x.db` (SQLAlchemy style) too."""
    path = url.removeprefix("sqlite://")
    if path.startswith("//"):
        path = path[1:]
    if not path or path == "/":
        raise StoreError(f"state URL {url!r} names no file: expected sqlite:///path/to/state.db")
    return path


__all__ = ["Claim", "Store", "StoreError", "open_store", "sqlite_path", "unsupported_url"]
