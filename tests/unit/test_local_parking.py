"""Local mode's budget side over a real SQLite state store: parking, and the runtime's 429 gate."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from cloudevents.http import CloudEvent
from rouse_runtime.budget_gate import BudgetGate, gate_key, gate_record, sync_gate
from rouse_runtime.events import parse_event
from rouse_runtime.local.metrics import LocalMetrics
from rouse_runtime.local.parking import LocalParking
from rouse_runtime.local.supervisor import PoolConfig, SkillPool
from rouse_runtime.parking.queue import Filter
from rouse_runtime.policies import budget
from rouse_runtime.policies.budget import BudgetSpec, Usage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

NOW = datetime.now(UTC)


def decide(tokens: float, on_exhausted: str = "park") -> budget.BudgetDecision:
    spec = BudgetSpec.from_agent(
        {"budget": {"daily": {"tokens": 100}, "onExhausted": on_exhausted}}
    )
    return budget.decide(spec, Usage(tokens=tokens, cost_usd=0.0), None, NOW)


def event(n: int) -> CloudEvent:
    return CloudEvent({"type": "t", "source": "/s", "id": f"e{n}"}, {"n": n})


def parking(tmp_path: Path, logged: list[str]) -> LocalParking:
    return LocalParking(
        "shop",
        f"sqlite:///{tmp_path}/state.db",
        broker_url=lambda: "http://127.0.0.1:9/",
        log=logged.append,
    )


async def test_parks_each_routed_skill_in_order_once(tmp_path: Path) -> None:
    logged: list[str] = []
    local = parking(tmp_path, logged)
    assert (local.parking, local.phase) == (False, "Running")
    await local.on_budget(decide(120))
    assert (local.parking, local.phase) == (True, "Suspended")
    assert await local.park(event(1), ["a", "b"]) == 2
    assert await local.park(event(2), ["a"]) == 1
    assert await local.park(event(1), ["a", "b"]) == 0  # a redelivery is held once
    items = await local.queue.items(Filter(agent="shop"))
    assert [(i.kind, i.namespace, i.skill, i.event_id) for i in items] == [
        ("park", "default", "a", "e1"),
        ("park", "default", "b", "e1"),
        ("park", "default", "a", "e2"),
    ]
    assert local.counts == {"a": 2, "b": 1}
    assert await local.refresh_counts() == {"a": 2, "b": 1}
    assert local.as_json()["parked"] == 3
    # park closes the gate for front doors only (no Trigger feeds them, so nothing parks
    # their requests): an event skill's gate admits, a front door's answers 503 with the reason
    assert local.decision is not None
    assert await local.store.get(gate_key("default", "shop")) == gate_record(local.decision)
    assert await BudgetGate(lambda: local.store, "default", "shop")(event(3)) is None
    door = BudgetGate(lambda: local.store, "default", "shop", front_door=True)
    refused = await door(event(3))
    assert refused is not None and refused.status_code == 503
    assert b"onExhausted: park" in refused.body and b"TokensExhausted" in refused.body
    await local.close()


async def test_reject_closes_the_runtimes_gate_and_the_reset_opens_it(tmp_path: Path) -> None:
    logged: list[str] = []
    local = parking(tmp_path, logged)
    spent = decide(100, "reject")
    await local.on_budget(spent)
    assert (local.parking, local.phase) == (False, "Suspended")
    assert await local.store.get(gate_key("default", "shop")) == gate_record(spent)
    # The runtime's own gate, reading the same store, refuses with 429.
    gate = BudgetGate(lambda: local.store, "default", "shop")
    refused = await gate(event(1))
    assert refused is not None and refused.status_code == 429

    await local.on_budget(decide(0, "reject"))
    await asyncio.gather(*local._tasks)  # the (empty) replay
    assert await local.store.get(gate_key("default", "shop")) is None
    assert await BudgetGate(lambda: local.store, "default", "shop")(event(1)) is None
    assert local.phase == "Running"
    assert any("SUSPENDED" in line for line in logged)
    await local.close()


async def test_the_warm_floor_is_kept_within_scaling_max() -> None:
    pool = SkillPool(
        {"metadata": {"name": "shop"}},
        {"name": "work"},
        env_for_port=lambda port: {},
        config=PoolConfig(limit=1, min=1, max=2, idle_seconds=1.0),
        metrics=LocalMetrics(),
        log=lambda line: None,
    )
    assert pool.keep() == 1
    pool.warm_floor = 2
    assert pool.keep() == 2
    pool.warm_floor = 5
    assert pool.keep() == 2  # never above scaling.max
    pool.warm_floor = 0
    assert pool.keep() == 1  # never below scaling.min


@contextlib.asynccontextmanager
async def skills_at(
    local: LocalParking, skill: Callable[[Request], Awaitable[Response]]
) -> AsyncIterator[None]:
    """A real HTTP stand-in for the local broker's `/skills/<skill>`, where replays go."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until uvicorn serves
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/skills/{skill}", skill, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        local._broker_url = lambda: f"http://127.0.0.1:{port}/"
        yield
    finally:
        server.should_exit = True
        await serving


async def test_whatever_is_parked_is_replayed_once_the_agent_may_spend(tmp_path: Path) -> None:
    """The operator's rules at each local evaluation: events parked under a budget since
    removed, or left by a replay that stopped, go out (`budget.replay_due`), none while
    suspended; without a budget, a gate closed in an earlier run is opened."""
    local = parking(tmp_path, [])
    await local.on_budget(decide(120))
    for n in range(2):
        await local.park(event(n), ["a"])
    delivered: list[str] = []

    async def skill(request: Request) -> Response:
        received, _ = parse_event(request.headers, await request.body())
        delivered.append(str(received["id"]))
        return Response(status_code=202)

    async with skills_at(local, skill):
        await local.settle(decide(120))  # still spent: nothing goes
        assert (local._tasks, delivered) == (set(), [])
        local.decision = None  # as after a restart without a daily budget
        await sync_gate(local.store, local.namespace, "shop", decide(120, "reject"))  # earlier run
        await local.settle(None)
        await asyncio.gather(*local._tasks)
    assert delivered == ["e0", "e1"]
    assert await local.store.get(gate_key(local.namespace, "shop")) is None  # the gate is open
    assert await local.queue.items() == []
    await local.close()


async def test_a_newcomer_during_the_replay_waits_behind_the_parked_events(
    tmp_path: Path,
) -> None:
    """A real HTTP stand-in for the local broker: replays come to the skill's address
    (`/skills/<skill>`), never through the broker's intake, where a newcomer is parked."""
    logged: list[str] = []
    local = parking(tmp_path, logged)
    await local.on_budget(decide(120))
    for n in range(3):
        await local.park(event(n), ["a"])
    delivered: list[str] = []

    async def skill(request: Request) -> Response:
        received, _ = parse_event(request.headers, await request.body())
        if received["id"] == "e0":  # something reaches the broker while the replay runs
            newcomer = event(9)
            if local.holds(newcomer):
                await local.park(newcomer, ["a"])
            else:
                delivered.append("broker e9")
        delivered.append(f"{request.path_params['skill']} {received['id']}")
        return Response(status_code=202)

    async with skills_at(local, skill):
        await local.on_budget(decide(0))  # the reset
        await asyncio.gather(*local._tasks)
    assert delivered == ["a e0", "a e1", "a e2", "a e9"]
    assert await local.queue.items() == []
    assert local.holds(event(10)) is False  # drained: deliver again
    assert any(
        "replayed 4 parked event(s) in order to their skills, 0 left" in line for line in logged
    )
    await local.close()


async def test_a_schedule_tick_while_suspended_is_parked_for_its_skill(tmp_path: Path) -> None:
    """As the cluster's PingSource points at the parking sink: the tick is kept, not skipped
    (the replay at resume delivers one tick per skill, the latest: parking/replay.py)."""
    from rouse_runtime.local.broker import Broker

    logged: list[str] = []
    local = parking(tmp_path, logged)
    agent = {
        "metadata": {"name": "shop"},
        "spec": {"skills": [{"name": "digest", "schedule": {"cron": "* * * * *"}}]},
    }
    broker = Broker(
        agent,
        {},
        dead_letters=local.queue,
        namespace=local.namespace,
        metrics=LocalMetrics(),
        log=logged.append,
    )
    broker.parking = local
    await local.on_budget(decide(120))
    tick = CloudEvent(
        {"type": "dev.knative.sources.ping", "source": "/pingsources/shop-digest-cron", "id": "t1"},
        {},
    )
    assert broker.fire_schedule("digest", tick) is None
    await asyncio.gather(*broker._tasks)
    items = await local.queue.items(Filter(kind="park"))
    assert [(i.skill, i.event_id) for i in items] == [("digest", "t1")]
    await broker.close()
    await local.close()
