"""The ledger and the parking queue behave the same on SQLite and on a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rouse_runtime.ledger import Entry, Line, open_ledger
from rouse_runtime.parking.queue import Filter, open_queue
from rouse_testing.redis import start_redis

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "redis"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    server = start_redis(tmp_path / "redis")
    yield server.url
    server.stop()


async def test_ledger_adds_concurrently_and_exactly(state_url: str) -> None:
    ledgers = [open_ledger(state_url) for _ in range(4)]
    entry = Entry(invocations=1, cold_starts=0, input_tokens=3, output_tokens=2, cost_nano_usd=7)

    async def writer(index: int) -> None:
        for _ in range(100):
            await ledgers[index].add("ns", "a", "s", entry, day="2026-01-05")

    await asyncio.gather(*(writer(i) for i in range(4)))
    await ledgers[0].add("ns", "a", "s", Entry(cold_starts=1), day="2026-01-04")
    assert await ledgers[1].lines(day="2026-01-05") == [
        Line("ns", "a", "s", 401, 1, 1200, 800, 2800, "2026-01-05", 2000, 2800)
    ]
    for ledger in ledgers:
        await ledger.close()


def structured(event_id: str) -> str:
    return json.dumps({"specversion": "1.0", "id": event_id, "source": "/s", "type": "t"})


async def test_queue_keeps_order_dedupes_and_removes(state_url: str) -> None:
    queue = open_queue(state_url)
    stored = [
        await queue.append("park", "ns", "a", "s1", "/s", "e1", structured("e1")),
        await queue.append("park", "ns", "a", "s1", "/s", "e2", structured("e2")),
        await queue.append("park", "ns", "a", "s1", "/s", "e1", structured("e1")),  # redelivery
        await queue.append("dead-letter", "ns", "a", "s1", "/s", "e1", structured("e1")),
        await queue.append("park", "ns", "b", "s1", "/s", "e3", structured("e3")),
    ]
    assert stored == [True, True, False, True, True]
    items = await queue.items(Filter(agent="a"))
    assert [(i.kind, i.event_id) for i in items] == [
        ("park", "e1"),
        ("park", "e2"),
        ("dead-letter", "e1"),
    ]
    assert json.loads(items[1].event)["id"] == "e2"
    assert await queue.remove([items[0].id, 99999]) == 1
    # Removed: the same event may be parked again later (a new suspension).
    assert await queue.append("park", "ns", "a", "s1", "/s", "e1", structured("e1"))
    assert [i.event_id for i in await queue.items(Filter(agent="a", kind="park"))] == ["e2", "e1"]
    await queue.close()


async def test_queue_pages_and_counts_without_reading_bodies(state_url: str) -> None:
    """Listing and replay read a page at a time; the counts (metrics) read no event body."""
    queue = open_queue(state_url)
    for n in range(7):
        await queue.append("park", "ns", "a", f"s{n % 2}", "/s", f"e{n}", structured(f"e{n}"))
    await queue.append("park", "ns", "b", "s0", "/s", "x", structured("x"))
    await queue.append("dead-letter", "other", "a", "s0", "/s", "d", structured("d"))
    where = Filter(namespace="ns", agent="a")
    pages: list[list[str]] = []
    after = 0
    while page := await queue.items(where, after=after, limit=3):
        pages.append([i.event_id for i in page])
        after = page[-1].id
    assert pages == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"]]
    assert await queue.counts() == {
        ("ns", "a", "s0", "park"): 4,
        ("ns", "a", "s1", "park"): 3,
        ("ns", "b", "s0", "park"): 1,
        ("other", "a", "s0", "dead-letter"): 1,
    }
    assert (await queue.count(where), await queue.count(Filter(agent="a"))) == (7, 8)
    first = await queue.items(where, limit=2)
    assert await queue.remove([i.id for i in first]) == 2
    assert await queue.counts() == {
        ("ns", "a", "s0", "park"): 3,
        ("ns", "a", "s1", "park"): 2,
        ("ns", "b", "s0", "park"): 1,
        ("other", "a", "s0", "dead-letter"): 1,
    }
    if state_url.startswith("redis://"):
        # The counts come from their own hash: with every body gone they still answer.
        import redis.asyncio as aioredis

        client = aioredis.from_url(state_url)
        keys = [k async for k in client.scan_iter("rouse:parked:item:*")]
        await client.delete(*keys)
        await client.aclose()
        assert sum((await queue.counts()).values()) == 7
    await queue.close()
