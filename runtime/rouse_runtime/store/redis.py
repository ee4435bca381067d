"""Redis store: shared by every pod of a skill, so a duplicate is claimed once cluster-wide.

Claims are `SET NX PX` (the lease is Redis's own expiry, so a dead owner frees
the key); complete/release are small Lua scripts that check the owner
atomically.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rouse_runtime.store.base import Claim, Store, StoreError

T = TypeVar("T")

_PREFIX = "rouse:"
_RUNNING = "running:"
_DONE = "done:"

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def redis_call(user: str, url: str, what: str, awaitable: Awaitable[T]) -> T:
    """Await a Redis call; a RedisError becomes StoreError naming the user, the URL and what failed.

    Shared by every Redis user of the state URL (state store, ledger, parking queue).
    """
    try:
        return await awaitable
    except RedisError as exc:
        raise StoreError(f"redis {user} {url!r}: {what} failed: {exc}") from exc


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        self._redis: aioredis.Redis = aioredis.from_url(url, decode_responses=True)
        self._claim = self._redis.register_script(_CLAIM)
        self._complete = self._redis.register_script(_COMPLETE)
        self._release = self._redis.register_script(_RELEASE)
        self._extend = self._redis.register_script(_EXTEND)
        self._scripts: dict[str, Any] = {}

    def script(self, source: str) -> Any:
        """A Lua script registered on this store's connection (e.g. the joins' own)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self._redis.register_script(source)
        return found

    async def _call(self, what: str, coro: Any) -> Any:
        return await redis_call("state store", self.url, what, coro)

    async def get(self, key: str) -> Any:
        raw = await self._call("get", self._redis.get(_PREFIX + "kv:" + key))
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        px = None if ttl is None else _ms(ttl)
        await self._call("set", self._redis.set(_PREFIX + "kv:" + key, json.dumps(value), px=px))

    async def delete(self, key: str) -> bool:
        return bool(await self._call("delete", self._redis.delete(_PREFIX + "kv:" + key)))

    async def save_checkpoint(self, key: str, value: Any) -> None:
        await self._call(
            "save_checkpoint", self._redis.set(_PREFIX + "checkpoint:" + key, json.dumps(value))
        )

    async def load_checkpoint(self, key: str) -> Any:
        raw = await self._call("load_checkpoint", self._redis.get(_PREFIX + "checkpoint:" + key))
        return None if raw is None else json.loads(raw)

    async def claim(self, key: str, owner: str, lease: float) -> Claim:
        raw = await self._call(
            "claim",
            self._claim(keys=[_PREFIX + "idem:" + key], args=[_RUNNING + owner, _ms(lease)]),
        )
        if raw is None:
            return Claim("claimed")
        if isinstance(raw, str) and raw.startswith(_DONE):
            return Claim("done", json.loads(raw[len(_DONE) :]))
        return Claim("busy")

    async def complete(self, key: str, owner: str, record: Any, ttl: float) -> bool:
        done = await self._call(
            "complete",
            self._complete(
                keys=[_PREFIX + "idem:" + key],
                args=[_RUNNING + owner, _DONE + json.dumps(record), _ms(ttl)],
            ),
        )
        return bool(done)

    async def release(self, key: str, owner: str) -> bool:
        released = await self._call(
            "release", self._release(keys=[_PREFIX + "idem:" + key], args=[_RUNNING + owner])
        )
        return bool(released)

    async def extend(self, key: str, owner: str, lease: float) -> bool:
        extended = await self._call(
            "extend",
            self._extend(keys=[_PREFIX + "idem:" + key], args=[_RUNNING + owner, _ms(lease)]),
        )
        return bool(extended)

    async def close(self) -> None:
        await self._redis.aclose()
