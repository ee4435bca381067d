"""A schedule fires: `rouse dev`'s LocalMode in this process with a shifted clock, real skill processes.

The clock is moved so the next minute boundary is a second away, so `* * * * *`
fires without the test waiting for a real minute.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from localdev import write_agent
from rouse_runtime.local.dev import DevOptions, LocalMode
from rouse_runtime.local.view import View
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

# Seconds until the shifted clock reaches the next minute. Start-up must fit in it, else the first
# tick is a minute later, after the wait: with 1 s the test failed twice on a busy 2-core machine.
LEAD = 5.0


def tick_agent(work: Path) -> dict[str, Any]:
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "sched"},
        "spec": {
            "image": "example.invalid/sched:1",
            "env": [{"name": "E2E_WORK", "value": str(work)}],
            "skills": [
                {
                    "name": "tick",
                    "handler": "e2e_skills:tick",
                    "reply": {"type": "e2e.tick.done"},
                    "schedule": {"cron": "* * * * *", "data": {"report": "hourly"}},
                    "scaling": {"max": 1, "retention": "1s"},
                }
            ],
        },
    }


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[LocalMode, io.StringIO]]:
    offset = (60.0 - time.time() % 60.0) - LEAD
    options = DevOptions(
        agent_file=write_agent(tmp_path / "agent", tick_agent(tmp_path)),
        port=0,
        state_dir=tmp_path / "state",
        clock=lambda: time.time() + offset,
    )
    out = io.StringIO()
    mode = LocalMode.create(options, View(stream=out, tty=False))
    mode.bind()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(mode.serve(),), daemon=True)
    thread.start()
    yield mode, out
    loop.call_soon_threadsafe(mode.request_exit)
    thread.join(timeout=30)
    assert not thread.is_alive(), "LocalMode did not stop"
    loop.close()


def test_cron_schedule_fires_a_ping_event_into_its_skill(
    running: tuple[LocalMode, io.StringIO],
) -> None:
    mode, out = running
    url = mode.broker_url.rstrip("/")

    def fired() -> list[dict[str, Any]] | None:
        events = httpx.get(f"{url}/events", timeout=5).json()["events"]
        pings = [e for e in events if e["via"] == "schedule"]
        done = pings and all(d["outcome"] != "pending" for d in pings[0]["deliveries"])
        return events if done else None

    events = wait_until(fired, timeout=60, what=f"the schedule to fire\n{out.getvalue()}")
    ping = next(e for e in events if e["via"] == "schedule")
    assert (ping["type"], ping["source"], ping["data"], ping["routedTo"]) == (
        "dev.knative.sources.ping",
        "/apis/v1/namespaces/default/pingsources/sched-tick-cron",
        {"report": "hourly"},
        ["tick"],
    )
    assert ping["deliveries"][0]["outcome"] == "replied"
    chain = httpx.get(f"{url}/chains/{ping['chain']}", timeout=5).json()
    reply = chain["events"][1]
    assert (reply["type"], reply["via"], reply["data"]) == (
        "e2e.tick.done",
        "reply:tick",
        {"woken_by": "dev.knative.sources.ping", "data": {"report": "hourly"}},
    )
    # One cron tick, one event (the next one is a shifted minute away).
    assert len([e for e in events if e["via"] == "schedule"]) == 1
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'rouse_local_schedule_fires_total{agent="sched",skill="tick"} 1.0' in metrics
