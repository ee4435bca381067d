"""One store suite, run against SQLite and a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from rouse_runtime.store import Claim, Store, StoreError, open_store, sqlite_path
from rouse_testing.redis import RedisServer, start_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/store.db"
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    client.close()
    return server.url


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    s = open_store(url)
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
