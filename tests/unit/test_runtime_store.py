"""One store suite, run against SQLite and a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from rouse_runtime.store import Claim, Store, StoreError, open_store, sqlite_path
from rouse_testing.redis import RedisServer


@pytest.fixture(
    params=["sqlite", "sqlite-sole-writer", pytest.param("redis", marks=pytest.mark.integration)]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/state/store.db"
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    client.close()
    return server.url


@pytest.fixture
async def store(url: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    # The skill server's mode: writes run at once in a transaction the loop turn commits.
    s = open_store(url, sole_writer="sole-writer" in request.node.callspec.id)
    yield s
    await s.close()


async def test_key_value(store: Store) -> None:
    assert await store.get("a") is None
    await store.set("a", {"n": 1, "list": [1, "x"]})
    assert await store.get("a") == {"n": 1, "list": [1, "x"]}
    await store.set("a", "replaced")
    assert await store.get("a") == "replaced"
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None


async def test_ttl_expires(store: Store) -> None:
    await store.set("short", 1, ttl=0.2)
    await store.set("long", 2, ttl=60)
    assert await store.get("short") == 1
    deadline = asyncio.get_running_loop().time() + 5
    while await store.get("short") is not None:
        assert asyncio.get_running_loop().time() < deadline, "ttl did not expire"
        await asyncio.sleep(0.05)
    assert await store.get("long") == 2


async def test_checkpoints_are_separate_from_values(store: Store) -> None:
    await store.set("k", "value")
    await store.save_checkpoint("k", {"step": 3})
    assert (await store.get("k"), await store.load_checkpoint("k")) == ("value", {"step": 3})
    await store.save_checkpoint("k", {"step": 4})
    assert await store.load_checkpoint("k") == {"step": 4}
    assert await store.load_checkpoint("other") is None


async def test_claim_complete_then_done(store: Store) -> None:
    assert await store.claim("e1", "owner-a", 30) == Claim("claimed")
    assert await store.claim("e1", "owner-b", 30) == Claim("busy")
    assert await store.complete("e1", "owner-b", {"status": 1}, 60) is False
    assert await store.complete("e1", "owner-a", {"status": 200, "event": "x"}, 60) is True
    assert await store.claim("e1", "owner-b", 30) == Claim("done", {"status": 200, "event": "x"})
    assert await store.release("e1", "owner-a") is False  # done records are not released


async def test_release_lets_a_retry_claim(store: Store) -> None:
    assert await store.claim("e2", "owner-a", 30) == Claim("claimed")
    assert await store.release("e2", "owner-b") is False
    assert await store.release("e2", "owner-a") is True
    assert await store.claim("e2", "owner-b", 30) == Claim("claimed")


async def test_expired_lease_is_taken_over(store: Store) -> None:
    assert await store.claim("e3", "dead-owner", 0.2) == Claim("claimed")
    deadline = asyncio.get_running_loop().time() + 5
    while (claim := await store.claim("e3", "new-owner", 30)) == Claim("busy"):
        assert asyncio.get_running_loop().time() < deadline, "lease did not expire"
        await asyncio.sleep(0.05)
    assert claim == Claim("claimed")
    assert await store.complete("e3", "dead-owner", {"late": True}, 60) is False
    assert await store.complete("e3", "new-owner", {"ok": True}, 60) is True


async def test_extend_renews_only_the_owners_live_claim(store: Store) -> None:
    """The replay lease (parking/replay.py): renewed by its holder, never by another."""
    assert await store.claim("e4", "holder", 0.5) == Claim("claimed")
    assert await store.extend("e4", "other", 30) is False
    assert await store.extend("e4", "holder", 30) is True
    started = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - started < 1.0:  # past the first 0.5 s lease
        assert await store.claim("e4", "other", 30) == Claim("busy")
        await asyncio.sleep(0.1)
    assert await store.release("e4", "holder") is True
    assert await store.extend("e4", "holder", 30) is False  # released: nothing to renew
    assert await store.claim("e4", "other", 30) == Claim("claimed")


async def test_concurrent_claims_one_winner(url: str) -> None:
    stores = [open_store(url) for _ in range(4)]
    try:
        claims = await asyncio.gather(
            *(s.claim("race", f"owner-{i}", 30) for i, s in enumerate(stores))
        )
        assert sorted(c.state for c in claims) == ["busy", "busy", "busy", "claimed"]
    finally:
        for s in stores:
            await s.close()


def test_sqlite_paths() -> None:
    assert sqlite_path("sqlite:///tmp/x.db") == "/tmp/x.db"
    assert sqlite_path("sqlite:////tmp/x.db") == "/tmp/x.db"
    with pytest.raises(StoreError, match="names no file"):
        sqlite_path("sqlite://")
    with pytest.raises(StoreError, match="unsupported state URL 'memcached://x'"):
        open_store("memcached://x")


async def test_unwritable_sqlite_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = open_store(f"sqlite:///{blocker}/sub/state.db")
    with pytest.raises(StoreError, match="cannot open SQLite state file"):
        await store.get("x")


async def test_prepare_opens_the_sqlite_file_and_leaves_errors_to_first_use(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "store.db"
    store = open_store(f"sqlite:///{path}")
    store.prepare()  # what rouse-runtime runs in a thread while it imports
    assert path.exists()
    await store.set("k", 1)
    assert await store.get("k") == 1
    await store.close()

    blocker = tmp_path / "file"
    blocker.write_text("")
    broken = open_store(f"sqlite:///{blocker}/sub/state.db")
    broken.prepare()  # no exception here: the first request reports it (503)
    with pytest.raises(StoreError, match="cannot open SQLite state file"):
        await broken.get("x")


async def test_a_sole_writer_commits_at_the_end_of_the_turn(tmp_path: Path) -> None:
    """Another process (here: another connection) sees a sole writer's claim once its turn ends."""
    import sqlite3

    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}", sole_writer=True)
    try:
        assert await store.claim("k", "me", 30) == Claim("claimed")  # answered in this turn
        other = sqlite3.connect(path, timeout=10)
        # The claim's transaction commits when the loop turns; until then, writers wait.
        await asyncio.sleep(0)
        row = other.execute("SELECT owner, state FROM idempotency WHERE key = 'k'").fetchone()
        assert row == ("me", "running")
        assert await store.complete("k", "me", {"status": 202}, 60) is True
        row = other.execute("SELECT state FROM idempotency WHERE key = 'k'").fetchone()
        assert row == ("done",)  # complete returned only after its commit
        other.close()
    finally:
        await store.close()


async def test_a_sole_writer_checkpoints_its_wal_off_the_event_loop(tmp_path: Path) -> None:
    """Its commits never checkpoint (the fsyncs stalled the loop); a worker thread copies
    the WAL into the file every CHECKPOINT_COMMITS commits, well before SQLite's own
    threshold (1000 pages) would have."""
    import shutil
    import sqlite3

    from rouse_runtime.store import sqlite as sqlite_store

    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}", sole_writer=True)
    try:
        for n in range(sqlite_store.CHECKPOINT_COMMITS + 1):
            await store.set(f"k{n}", n)  # one commit each

        def rows_in_the_file_alone() -> int:
            copy = tmp_path / "copy.db"  # the file without its WAL: what was checkpointed
            shutil.copyfile(path, copy)
            db = sqlite3.connect(copy)
            try:
                return int(db.execute("SELECT COUNT(*) FROM kv").fetchone()[0])
            except sqlite3.Error:
                return 0  # not even the schema yet
            finally:
                db.close()

        deadline = asyncio.get_running_loop().time() + 30
        while rows_in_the_file_alone() < sqlite_store.CHECKPOINT_COMMITS:
            assert asyncio.get_running_loop().time() < deadline, "the WAL was not checkpointed"
            await asyncio.sleep(0.05)
    finally:
        await store.close()


async def test_a_sole_writers_wal_starts_over_under_a_steady_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint racing the writer never reaches the WAL's end; every RESTART_COMMITS
    one runs in the writer, so the WAL is written from its start again, not grown without end."""
    from rouse_runtime.store import sqlite as sqlite_store

    # No worker checkpoints (the test above has them): the writer's own is what restarts.
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_COMMITS", 10**9)
    monkeypatch.setattr(sqlite_store, "RESTART_COMMITS", 50)
    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}", sole_writer=True)
    commits = 600
    try:
        for n in range(commits):
            await store.set(f"k{n}", "x" * 100)  # one commit each, a frame or more
        wal = path.with_name("state.db-wal").stat().st_size
    finally:
        await store.close()
    page = 4096 + 24  # a WAL frame: its header and one page
    # Without a restart each of the commits adds a frame or more; with one every 50, the WAL
    # holds a few restarts' worth at most.
    assert wal < commits * page / 3, f"the WAL grew to {wal} bytes over {commits} commits"
