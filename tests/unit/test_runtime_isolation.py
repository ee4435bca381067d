"""Two namespaces, one store, two Agents of the same name: nothing one stores reaches the other.

Real runtime processes over loopback HTTP sharing one SQLite file or one real
redis-server, as two teams' same-named Agents share the chart's Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from rouse_runtime.budget_gate import gate_key
from rouse_runtime.ledger import open_ledger
from rouse_runtime.store import open_store
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import wait_until

HANDLERS = Path(__file__).parent / "runtime_handlers"
AGENT = "support"


@pytest.fixture
def teams(state_url: str) -> Iterator[dict[str, RunningRuntime]]:
    started: dict[str, RunningRuntime] = {}
    try:
        for namespace in ("team-a", "team-b"):
            env = {
                "ROUSE_HANDLER": "rouse_isolation_skills:keeper",
                "ROUSE_AGENT": AGENT,
                "ROUSE_SKILL": "keeper",
                "ROUSE_NAMESPACE": namespace,
                "ROUSE_STATE_URL": state_url,
            }
            started[namespace] = start_runtime(env, HANDLERS)
        yield started
    finally:
        for rt in started.values():
            rt.stop()


def send(rt: RunningRuntime, kind: str, id_: str, *, rousekey: str | None = None) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/isolation",  # same source and id in both namespaces
        "ce-type": f"iso.{kind}",
        "content-type": "application/json",
    }
    if rousekey is not None:
        headers["ce-rousekey"] = rousekey
    return httpx.post(rt.url, headers=headers, content=b"{}", timeout=30)


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def store_call(state_url: str, method: str, *args: Any) -> Any:
    async def call() -> Any:
        store = open_store(state_url)
        try:
            return await getattr(store, method)(*args)
        finally:
            await store.close()

    return asyncio.run(call())


def test_same_named_agents_in_two_namespaces_share_nothing(
    teams: dict[str, RunningRuntime], state_url: str
) -> None:
    a, b = teams["team-a"], teams["team-b"]
    # Idempotency: the same (source, id) runs in each namespace, never answered from the other's reply.
    assert data(send(a, "set", "e-1")) == {"ran": "team-a"}
    assert data(send(b, "set", "e-1")) == {"ran": "team-b"}
    assert data(send(b, "set", "e-1")) == {"ran": "team-b"}  # b's own stored reply
    # ctx.state: each namespace reads its own value.
    assert data(send(a, "get", "g-1"))["value"] == "team-a"
    assert data(send(b, "get", "g-1"))["value"] == "team-b"
    # Checkpoints of the same event: b starts from nothing, not from a's.
    assert data(send(a, "checkpoint", "c-1"))["before"] is None
    assert data(send(b, "checkpoint", "c-1"))["before"] is None
    # Waits: a's skill waits on key K-1; b's approval with that key does not resume it.
    assert send(a, "wait", "w-1").status_code == 202
    assert data(send(b, "approved", "ok-1", rousekey="K-1"))["resumed"] is None
    assert data(send(a, "approved", "ok-2", rousekey="K-1"))["resumed"] == "team-a"

    # Ledger: each namespace's invocations on its own line.
    async def lines() -> dict[str, int]:
        ledger = open_ledger(state_url)
        try:
            return {
                line.namespace: line.invocations
                for line in await ledger.lines()
                if line.agent == AGENT
            }
        finally:
            await ledger.close()

    # a ran set, get, checkpoint, wait, approved; b the same but no wait (its duplicate did not run).
    assert asyncio.run(lines()) == {"team-a": 5, "team-b": 4}
    # Gates: a's closed reject gate stops a (once its runtime re-reads it) and never b.
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    store_call(state_url, "set", gate_key("team-a", AGENT), {"until": until, "message": "spent"})
    wait_until(lambda: send(a, "get", "g-2").status_code == 429, timeout=20, what="a's gate")
    assert send(b, "get", "g-2").status_code == 200


def test_kubernetes_pod_without_namespace_refuses_to_start(tmp_path: Path) -> None:
    """In a pod (KUBERNETES_SERVICE_HOST set) a runtime not told its namespace exits 2, naming it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUSE_")}
    env |= {
        "ROUSE_HANDLER": "rouse_isolation_skills:keeper",
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "ROUSE_STATE_URL": f"sqlite:///{tmp_path}/state.db",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rouse_runtime"],
        cwd=HANDLERS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "ROUSE_NAMESPACE is not set" in proc.stderr
