"""The parking service's runs API, as a real process over HTTP, on SQLite and a real redis-server.

Parked and dead-lettered events land in their run's history; `/runs` lists and
folds them; cancel and the kill switch need the parking token and are recorded;
the `rouse runs` CLI reads and acts through the same API with the token from
its environment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rouse_runtime.runs import Record, open_runlog
from rouse_runtime.runs.ids import root_run_id
from rouse_testing.parking import AUTH, Parking, start_parking
from rouse_testing.runtime import start_sink


@pytest.fixture
def parking(state_url: str, tmp_path: Path) -> Iterator[Parking]:
    """The parking service on each store in turn (tests/conftest.py's state_url)."""
    service = start_parking(tmp_path, state_url)
    yield service
    service.stop()


def send(parking: Parking, path: str, event_id: str, **ext: str) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/tickets",
        "ce-type": "com.example.ticket.created",
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in ext.items()},
    }
    return httpx.post(f"{parking.url}{path}", headers=headers, content=b"{}", timeout=10)


def test_parked_and_dead_lettered_events_are_in_their_runs(
    parking: Parking, tmp_path: Path
) -> None:
    agent = f"a{abs(hash(tmp_path)) % 10**8}"
    assert send(parking, f"/park/ns-a/{agent}/triage", "p1").status_code == 202
    assert (
        send(parking, f"/dead-letter/ns-a/{agent}/triage", "d1", rouserun="order-7").status_code
        == 202
    )
    listed = httpx.get(f"{parking.url}/runs", params={"agent": agent}).json()["items"]
    assert sorted((r["run"], r["state"]) for r in listed) == sorted(
        [(root_run_id("/tickets", "p1"), "parked"), ("order-7", "failed")]
    )
    failed = httpx.get(f"{parking.url}/runs", params={"agent": agent, "state": "failed"}).json()
    assert [r["run"] for r in failed["items"]] == ["order-7"]
    shown = httpx.get(f"{parking.url}/runs/ns-a/{agent}/order-7").json()
    assert [(h["kind"], h["skill"], h["event"]["id"]) for h in shown["history"]] == [
        ("dead_lettered", "triage", "d1")
    ]
    missing = httpx.get(f"{parking.url}/runs/ns-a/{agent}/nothing-here")
    assert (missing.status_code, missing.json()["error"]) == (404, "no such run")
    bad = httpx.get(f"{parking.url}/runs", params={"state": "sleeping"})
    assert bad.status_code == 400 and "sleeping" in bad.json()["detail"]


def test_cancel_and_kill_need_the_token_and_are_recorded(parking: Parking, tmp_path: Path) -> None:
    agent = f"k{abs(hash(tmp_path)) % 10**8}"
    cancel = f"{parking.url}/runs/ns-a/{agent}/order-9/cancel"
    refused = httpx.post(cancel, json={"by": "mallory"})
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
    done = httpx.post(cancel, json={"by": "alice"}, headers=AUTH)
    assert done.json() == {
        "run": "order-9",
        "cancelled": True,
        "already": False,
        "compensations": [],
    }
    again = httpx.post(cancel, json={"by": "alice"}, headers=AUTH)
    assert again.json()["already"] is True
    shown = httpx.get(f"{parking.url}/runs/ns-a/{agent}/order-9").json()
    assert (shown["state"], [(h["kind"], h.get("by")) for h in shown["history"]]) == (
        "cancelled",
        [("cancelled", "alice")],
    )
    kill = f"{parking.url}/runs/ns-a/{agent}/kill"
    assert httpx.post(kill, json={"on": True}).status_code == 401
    assert httpx.post(kill, json={"on": True}, headers=AUTH).json()["killed"] is True
    stops = httpx.get(f"{parking.url}/runs/ns-a/{agent}").json()
    assert stops == {"killed": True, "cancelled": ["order-9"]}
    # the CLI, with the token from its environment
    lifted = parking.cli("runs", "kill", agent, "--namespace", "ns-a", "--off", "--json")
    assert lifted.returncode == 0, lifted.stderr
    assert json.loads(lifted.stdout)["killed"] is False
    assert httpx.get(f"{parking.url}/runs/ns-a/{agent}").json()["killed"] is False
    bad = httpx.post(f"{parking.url}/runs/ns-a/{agent}/Not_A_Run/cancel", headers=AUTH)
    assert bad.status_code == 400 and "not a run id" in bad.json()["detail"]


def test_cli_cancels_with_the_token_from_its_env(parking: Parking) -> None:
    done = parking.cli("runs", "cancel", "order-1", "--agent", "a1")  # ROUSE_PARKING_TOKEN set
    assert (done.returncode, done.stdout.strip()) == (0, "run order-1 cancelled"), done.stderr
    plain = httpx.post(f"{parking.url}/runs/default/a1/order-2/cancel")  # no token
    assert plain.status_code == 401


def test_a_dead_letter_sends_the_compensations_once_newest_first(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The cluster's path: Knative dead-letters to the parking service, which undoes the run's
    completed steps through the broker (a real HTTP sink here), each once."""
    sink = start_sink()
    state_url = f"sqlite:///{tmp_path}/state.db"
    service = start_parking(tmp_path, state_url, sink.url)
    request.addfinalizer(sink.stop)
    request.addfinalizer(service.stop)

    def step(skill: str, event_id: str, undo: str) -> Record:
        fields = {"outcome": "ok", "status": 200,
                  "compensate": {"type": undo, "data": {"request": {"n": event_id}, "result": None}}}  # fmt: skip
        ref = {"type": "t", "id": event_id, "source": "/s"}
        return Record("ns-a", "trip", "trip-7", "ran", skill, ref, fields)

    async def seed() -> None:
        log = open_runlog(state_url)
        await log.append([step("flight", "e1", "flight.cancel"), step("car", "e2", "car.cancel")])
        await log.close()

    asyncio.run(seed())
    for event_id in ("h1", "h1-again"):  # a second dead letter of the run sends nothing new
        answer = send(service, "/dead-letter/ns-a/trip/hotel", event_id, rouserun="trip-7")
        assert answer.status_code == 202
    sent = [(r.headers["ce-type"], r.headers["ce-rousecompensates"], r.headers["ce-rouserun"])
            for r in sink.received]  # fmt: skip
    assert sent == [("car.cancel", "car/e2", "trip-7"), ("flight.cancel", "flight/e1", "trip-7")]
    assert json.loads(sink.received[0].body) == {"request": {"n": "e2"}, "result": None}
    shown = httpx.get(f"{service.url}/runs/ns-a/trip/trip-7").json()
    assert [(h["kind"], h["skill"]) for h in shown["history"]][2:] == [
        ("dead_lettered", "hotel"),
        ("compensation", "car"),
        ("compensation", "flight"),
        ("dead_lettered", "hotel"),
    ]
