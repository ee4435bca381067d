"""Fixtures shared by every test tier. Tier-specific fixtures live beside their tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rouse_testing.redis import RedisServer, start_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server per module (a missing binary fails the test, see start_redis)."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn; one redis-server per module (tests use their own ids and keys)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url
