"""The support-triage front door `ask` in local mode, end to end over real HTTP.

`rouse dev` with the example (copied, with `ask` idling out after 2 s and at most 7 steps
per invocation): a streamed answer (several SSE events, then `done`); a ticket handed to
triage with the run followed over SSE until the chain ends; 401 without a key, with no
process started; a budget stop mid-stream naming the limit; scale to zero afterwards; and
without ROUSE_API_KEYS the front door served open with a warning at start-up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from httpx_sse import connect_sse
from localdev import LocalDev, start_dev
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KEY = "k-e2e-front-door"
ASK = "/agents/support-triage/ask"


def example_copy(directory: Path) -> Path:
    """The example agent, `ask` idling out after 2 s and 7 steps per invocation.

    The example's warm-pool schedule (weekdays 08:00-18:00 UTC) is dropped: inside it the
    pool keeps `ask` warm, and these tests would pass or fail by the hour they ran."""
    shutil.copytree(REPO / "examples" / "support-triage", directory)
    path = directory / "agent.yaml"
    agent = yaml.safe_load(path.read_text())
    ask = next(s for s in agent["spec"]["skills"] if s["name"] == "ask")
    ask["scaling"]["retention"] = "2s"
    agent["spec"]["budget"]["perInvocation"]["maxSteps"] = 7
    agent["spec"]["warmPool"].pop("schedules")
    path.write_text(yaml.safe_dump(agent))
    return path


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDev]:
    work = tmp_path_factory.mktemp("front-door")
    running = start_dev(example_copy(work / "agent"), work / "state", env={"ROUSE_API_KEYS": KEY})
    yield running
    assert running.stop() == 0


def sse(
    dev: LocalDev, method: str, path: str, body: Any = None, key: str = KEY
) -> list[tuple[str, Any]]:
    """Every (event, data) of an SSE answer, read to its end."""
    headers = {"authorization": f"Bearer {key}"}
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, method, f"{dev.url}{path}", json=body, headers=headers) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        return [(e.event, json.loads(e.data)) for e in source.iter_sse()]


def test_without_a_key_401_and_no_process_starts(dev: LocalDev) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}):
        response = httpx.post(f"{dev.url}{ASK}", json={"question": "hi"}, headers=headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert dev.skill("ask")["starts"] == 0
    assert httpx.post(f"{dev.url}/agents/support-triage/triage", json={}).status_code == 404


def test_an_answer_streams_in_several_events_then_done(dev: LocalDev) -> None:
    got = sse(dev, "POST", ASK, {"question": "Where can I download my invoice?"})
    (first, opening), *chunks, (last, end) = got
    assert first == "run" and opening["follow"] == f"{ASK}/runs/{opening['run']}"
    assert len(chunks) >= 3 and all(name == "chunk" for name, _ in chunks)
    assert {c["method"] for _, c in chunks} == {"template"}  # no model here: says so
    assert "".join(c["text"] for _, c in chunks).startswith("Invoices are under Settings, Billing")
    assert (last, end["run"]) == ("done", opening["run"])


def test_a_budget_stop_mid_stream_names_the_limit(dev: LocalDev) -> None:
    got = sse(dev, "POST", ASK, {"question": "I think my account was hacked"})
    chunks = [c for name, c in got if name == "chunk"]
    assert len(chunks) == 7  # the security answer has 8 chunks, a step each; 7 allowed
    name, stop = got[-1]
    assert name == "budget.exceeded" and (stop["limit"], stop["max"]) == ("steps", 7)


def test_a_ticket_is_handed_to_triage_and_the_run_followed_to_its_end(dev: LocalDev) -> None:
    got = sse(
        dev,
        "POST",
        ASK,
        {"question": "Please open a ticket: checkout is down for everyone", "customer": "Ada"},
    )
    (_, opening), (_, handed), (last, _) = got
    assert handed["handedOff"] == "triage" and handed["ticket"].startswith("T-") and last == "done"
    steps = sse(dev, "GET", opening["follow"])
    assert steps[-1] == ("end", {"run": opening["run"], "state": "done", "steps": len(steps) - 1})
    events = [d["type"] for name, d in steps if name == "event"]
    assert events[0] == "com.example.ticket.created"
    assert set(events) == {
        "com.example.ticket.created",
        "com.example.ticket.triaged",
        "com.example.reply.drafted",
        "com.example.ticket.urgent",  # "down for everyone": urgent, escalated
        "com.example.ticket.escalated",
    }
    delivered = {(d["skill"], d["outcome"]) for name, d in steps if name == "delivery"}
    assert delivered == {("triage", "replied"), ("draft", "replied"), ("escalate", "replied")}
    # the run is the broker's chain: the ticket's events carry the request's trace
    chain = dev.get(f"/chains/{opening['run']}")
    assert chain["done"] and chain["events"][0]["data"]["id"] == handed["ticket"]


def test_the_front_door_scales_to_zero_after(dev: LocalDev) -> None:
    assert dev.skill("ask")["coldStarts"] >= 1
    wait_until(lambda: not dev.skill("ask")["processes"], timeout=30, what="ask scaled to zero")
    got = sse(dev, "POST", ASK, {"question": "How do I reset my password?"})
    assert got[-1][0] == "done" and dev.skill("ask")["coldStarts"] >= 2


def test_without_keys_local_mode_serves_open_and_says_so(tmp_path: Path) -> None:
    running = start_dev(example_copy(tmp_path / "agent"), tmp_path / "state")
    try:
        wait_until(
            lambda: "is served OPEN" in running.logs(), timeout=10, what="the start-up warning"
        )
        assert "ROUSE_API_KEYS is not set" in running.logs()
        response = httpx.post(f"{running.url}{ASK}", json={"question": "hello?"}, timeout=60)
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
    finally:
        assert running.stop() == 0
