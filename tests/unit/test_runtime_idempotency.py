"""Duplicate deliveries run the skill once: in sequence, concurrently, and across processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rouse_testing.redis import RedisServer, start_redis
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import wait_until

HANDLERS = Path(__file__).parent / "runtime_handlers"


def headers(id_: str, source: str = "/tests/idem") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": source,
        "ce-type": "test.count",
        "content-type": "application/json",
    }


def runs(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def runs_file(tmp_path: Path) -> Path:
    return tmp_path / "runs.txt"


@pytest.fixture
def runtime(runs_file: Path) -> Iterator[RunningRuntime]:
    rt = start_runtime(
        {"ROUSE_HANDLER": "rouse_test_skills:skill", "ROUSE_TEST_RUNS": str(runs_file)}, HANDLERS
    )
    yield rt
    rt.stop()


async def deliver_concurrently(urls: list[str], id_: str, body: bytes) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return list(
            await asyncio.gather(
                *(client.post(url, headers=headers(id_), content=body) for url in urls)
            )
        )


def test_redelivery_answers_from_store_without_rerun(
    runtime: RunningRuntime, runs_file: Path
) -> None:
    first = httpx.post(runtime.url, headers=headers("d-1"), content=b"{}")
    second = httpx.post(runtime.url, headers=headers("d-1"), content=b"{}")
    assert first.status_code == second.status_code == 200
    assert (second.json(), dict(second.headers) | {"date": ""}) == (
        first.json(),
        dict(first.headers) | {"date": ""},
    )
    assert runs(runs_file) == ["/tests/idem d-1"]
    # same id from another source is another event
    other = httpx.post(runtime.url, headers=headers("d-1", source="/tests/other"), content=b"{}")
    assert other.json() == {"runs_so_far": 2}
    text = httpx.get(f"{runtime.url}/metrics").text
    assert 'rouse_invocations_total{agent="local",outcome="duplicate",skill="skill"} 1.0' in text
    assert 'rouse_invocations_total{agent="local",outcome="ok",skill="skill"} 2.0' in text


def test_concurrent_duplicates_run_once(runtime: RunningRuntime, runs_file: Path) -> None:
    responses = asyncio.run(deliver_concurrently([runtime.url] * 5, "c-1", b'{"sleep": 0.5}'))
    assert [r.status_code for r in responses] == [200] * 5
    assert {r.headers["ce-id"] for r in responses} == {responses[0].headers["ce-id"]}
    assert [r.json() for r in responses] == [{"runs_so_far": 1}] * 5
    assert runs(runs_file) == ["/tests/idem c-1"]


def test_two_processes_sharing_sqlite_run_once(runs_file: Path, tmp_path: Path) -> None:
    env = {
        "ROUSE_HANDLER": "rouse_test_skills:skill",
        "ROUSE_TEST_RUNS": str(runs_file),
        "ROUSE_STATE_URL": f"sqlite:///{tmp_path}/shared.db",
    }
    a, b = start_runtime(env, HANDLERS), start_runtime(env, HANDLERS)
    try:
        responses = asyncio.run(
            deliver_concurrently([a.url, b.url, a.url, b.url], "p-1", b'{"sleep": 0.5}')
        )
        assert [r.status_code for r in responses] == [200] * 4
        assert [r.json() for r in responses] == [{"runs_so_far": 1}] * 4
        assert runs(runs_file) == ["/tests/idem p-1"]
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.mark.integration
def test_two_processes_sharing_redis_run_once(runs_file: Path, redis_server: RedisServer) -> None:
    env = {
        "ROUSE_HANDLER": "rouse_test_skills:skill",
        "ROUSE_TEST_RUNS": str(runs_file),
        "ROUSE_STATE_URL": redis_server.url,
    }
    a, b = start_runtime(env, HANDLERS), start_runtime(env, HANDLERS)
    try:
        responses = asyncio.run(
            deliver_concurrently([a.url, b.url, a.url, b.url], "r-1", b'{"sleep": 0.5}')
        )
        assert [r.status_code for r in responses] == [200] * 4
        assert [r.json() for r in responses] == [{"runs_so_far": 1}] * 4
        assert runs(runs_file) == ["/tests/idem r-1"]
        again = httpx.post(b.url, headers=headers("r-1"), content=b"{}")
        assert again.json() == {"runs_so_far": 1}
        assert runs(runs_file) == ["/tests/idem r-1"]
    finally:
        a.stop()
        b.stop()


def test_redis_down_is_503_not_a_crash(runs_file: Path, tmp_path: Path) -> None:
    from rouse_testing.wait import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    rt = start_runtime(
        {
            "ROUSE_HANDLER": "rouse_test_skills:skill",
            "ROUSE_TEST_RUNS": str(runs_file),
            "ROUSE_STATE_URL": url,
        },
        HANDLERS,
    )
    try:
        response = httpx.post(rt.url, headers=headers("down-1"), content=b"{}")
        assert (response.status_code, response.json()["error"]) == (503, "state store unavailable")
        assert response.json()["detail"].startswith(f"redis state store {url!r}: claim failed: ")
        assert runs(runs_file) == []
    finally:
        rt.stop()


def test_duplicate_held_by_a_silent_owner_is_409_then_taken_over(
    runs_file: Path, tmp_path: Path
) -> None:
    """A claim held elsewhere past the wait is 409 (Knative retries it); once its lease ends, it runs."""
    from rouse_runtime.scope import Scope
    from rouse_runtime.server import idempotency_key
    from rouse_runtime.store.sqlite import SqliteStore

    state = f"sqlite:///{tmp_path}/held.db"
    store = SqliteStore(f"{tmp_path}/held.db")
    key = idempotency_key(Scope("default", "local"), "skill", "/tests/idem", "held-1")
    rt = start_runtime(
        {
            "ROUSE_HANDLER": "rouse_test_skills:skill",
            "ROUSE_TEST_RUNS": str(runs_file),
            "ROUSE_STATE_URL": state,
            "ROUSE_TIMEOUT_SECONDS": "1",
        },
        HANDLERS,
    )
    try:
        # Claimed now (not before the start-up, whose time varies): the lease outlives the 1 s wait.
        assert asyncio.run(store.claim(key, "another-pod", 6.0)).state == "claimed"
        busy = httpx.post(rt.url, headers=headers("held-1"), content=b"{}", timeout=30)
        assert (busy.status_code, busy.json()) == (
            409,
            {
                "error": "duplicate in progress",
                "detail": "event 'held-1' from '/tests/idem' is being processed by another instance; retry later",
            },
        )
        assert runs(runs_file) == []
        wait_until(
            lambda: (
                httpx.post(rt.url, headers=headers("held-1"), content=b"{}", timeout=30).status_code
                == 200
            ),
            timeout=20,
            what="the expired claim to be taken over",
        )
        assert runs(runs_file) == ["/tests/idem held-1"]
    finally:
        rt.stop()
        asyncio.run(store.close())
