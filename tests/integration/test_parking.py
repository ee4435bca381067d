"""The parking service as a real process: durable ordered storage, replay, CLI, metrics."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import httpx
import pytest
from rouse_runtime.parking.replay import lease_key
from rouse_testing.parking import AUTH, Parking, start_parking
from rouse_testing.wait import free_port, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Endpoints:
    """A real HTTP server standing in for the skills' Services and the broker ingress.

    Records every POST with its path: `/skills/<skill>` is a skill's own address,
    `/ns-a/default` the broker. `refuse_after` answers 503 once that many were
    accepted; `answers` gives a status per event id (e.g. 400); `reply_to_ids`
    makes a skill answer 200 with a reply CloudEvent; `hold` blocks a delivery
    until it is set.
    """

    received: list[dict[str, str]] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    refuse_after: int | None = None
    answers: dict[str, int] = field(default_factory=dict)
    reply_to_ids: set[str] = field(default_factory=set)
    hold: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        """The broker ingress of namespace ns-a, broker default."""
        return f"{self.base}/ns-a/default"

    def skill_url(self, skill: str) -> str:
        return f"{self.base}/skills/{skill}"

    def ids(self, path: str | None = None) -> list[str]:
        return [r["ce-id"] for r in self.received if path is None or r["path"] == path]


@pytest.fixture
def broker() -> Iterator[Endpoints]:
    state = Endpoints()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            event_id = headers.get("ce-id", "")
            with lock:
                state.attempts.append(event_id)
            if state.hold is not None and not state.hold.is_set():
                state.holding.set()
                state.hold.wait(timeout=30)
            with lock:
                refused = (
                    state.refuse_after is not None and len(state.received) >= state.refuse_after
                )
                status = 503 if refused else state.answers.get(event_id, 202)
                if status < 300:
                    state.received.append({**headers, "path": self.path, "body": body.decode()})
            if status < 300 and event_id in state.reply_to_ids:
                self.send_response(200)
                for name, value in {
                    "ce-specversion": "1.0",
                    "ce-id": f"reply-{event_id}",
                    "ce-source": "/skills/triage",
                    "ce-type": "com.example.ticket.triaged",
                    "content-type": "application/json",
                    "content-length": "2",
                }.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b"{}")
                return
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    state.server.shutdown()


@pytest.fixture
def parking(tmp_path: Path, broker: Endpoints) -> Iterator[Parking]:
    service = start_parking(
        tmp_path,
        f"sqlite:///{tmp_path}/state.db",
        broker.url,
        {"ROUSE_SKILL_URL": broker.base + "/skills/{skill}"},
    )
    yield service
    service.stop()


def binary(event_id: str, source: str = "/tickets", data: object = None) -> dict[str, object]:
    return {
        "headers": {
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": source,
            "ce-type": "com.example.ticket.created",
            "content-type": "application/json",
        },
        "content": json.dumps(data if data is not None else {"n": event_id}).encode(),
    }


def structured(event_id: str) -> dict[str, object]:
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/tickets",
        "type": "com.example.ticket.created",
        "datacontenttype": "application/json",
        "data": {"n": event_id},
    }
    return {
        "headers": {"content-type": "application/cloudevents+json"},
        "content": json.dumps(event).encode(),
    }


def park(url: str, path: str, request: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{url}{path}", timeout=10, **request)  # type: ignore[arg-type]


def targets(broker: Endpoints, *skills: str) -> dict[str, object]:
    """A replay request naming each skill's address and delivery spec, as the operator sends."""
    delivery = {"retries": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"}
    return {
        "broker": "default",
        "targets": {s: {"url": broker.skill_url(s), "delivery": delivery} for s in skills},
    }


def test_parked_events_are_stored_once_and_replayed_to_their_own_skill_in_order(
    parking: Parking, broker: Endpoints
) -> None:
    for n in range(1, 6):
        request = binary(f"e{n}") if n % 2 else structured(f"e{n}")
        answer = park(parking.url, "/park/ns-a/support/triage", request)
        # Knative's delivery contract: a 2xx answer to a Trigger delivery is empty (or an event).
        assert (answer.status_code, answer.content) == (202, b"")
    # A sink retry of the same event is not stored twice.
    again = park(parking.url, "/park/ns-a/support/triage", binary("e3"))
    assert (again.status_code, again.content) == (202, b"")
    # Another skill's Trigger parked e2 too; another agent's event must stay.
    park(parking.url, "/park/ns-a/support/draft", binary("e2"))
    park(parking.url, "/park/ns-a/other/triage", binary("x1"))

    listed = httpx.get(f"{parking.url}/parked", params={"agent": "support"}).json()["items"]
    assert [(i["skill"], i["eventId"]) for i in listed] == [
        ("triage", "e1"),
        ("triage", "e2"),
        ("triage", "e3"),
        ("triage", "e4"),
        ("triage", "e5"),
        ("draft", "e2"),
    ]
    assert listed[1]["event"]["data"] == {"n": "e2"}

    metrics = httpx.get(f"{parking.url}/metrics").text
    assert (
        'rouse_parked_events{agent="support",kind="park",namespace="ns-a",skill="triage"} 5.0'
        in metrics
    )

    broker.refuse_after = 2  # the skill fails after two: its retries, then the order holds
    request = targets(broker, "triage", "draft")
    first = httpx.post(f"{parking.url}/replay/ns-a/support", json=request, timeout=30, headers=AUTH)
    assert first.status_code == 502
    assert (first.json()["replayed"], first.json()["removed"], first.json()["remaining"]) == (
        2,
        2,
        4,
    )
    assert "HTTP 503" in first.json()["error"]
    assert broker.attempts.count("e3") == 3  # the first try and delivery.retries = 2

    broker.refuse_after = None
    broker.reply_to_ids = {"e4"}  # the skill replies to e4: the reply goes into the broker
    second = httpx.post(
        f"{parking.url}/replay/ns-a/support", json=request, timeout=30, headers=AUTH
    )
    assert second.status_code == 200, second.text
    assert (second.json()["replayed"], second.json()["remaining"]) == (4, 0)
    # Each event went to the skill it was parked for, once, in order; never into the broker.
    assert broker.ids("/skills/triage") == ["e1", "e2", "e3", "e4", "e5"]
    assert broker.ids("/skills/draft") == ["e2"]
    assert broker.ids("/ns-a/default") == ["reply-e4"]
    assert broker.received[0]["ce-type"] == "com.example.ticket.created"
    assert json.loads(broker.received[1]["body"]) == {"n": "e2"}
    left = httpx.get(f"{parking.url}/parked").json()["items"]
    assert [(i["agent"], i["eventId"]) for i in left] == [("other", "x1")]


def test_an_answer_knative_would_not_retry_moves_the_event_to_the_dead_letters(
    parking: Parking, broker: Endpoints
) -> None:
    for event_id in ("b1", "b2", "b3"):
        park(parking.url, "/park/ns-a/support/triage", binary(event_id))
    park(parking.url, "/park/ns-a/support/gone", binary("g1"))  # a skill since removed
    broker.answers = {"b2": 400}
    done = httpx.post(
        f"{parking.url}/replay/ns-a/support",
        json=targets(broker, "triage"),
        timeout=30,
        headers=AUTH,
    )
    assert done.status_code == 200, done.text
    assert (done.json()["replayed"], done.json()["dead_lettered"]) == (2, 2)
    assert broker.ids("/skills/triage") == ["b1", "b3"]
    assert broker.attempts.count("b2") == 1  # 400 is final, as for Knative
    left = httpx.get(f"{parking.url}/parked").json()["items"]
    assert [(i["kind"], i["skill"], i["eventId"]) for i in left] == [
        ("dead-letter", "triage", "b2"),
        ("dead-letter", "gone", "g1"),  # no address any more: kept, never stranded
    ]


def lease_expiry(parking: Parking) -> float:
    """When the replay lease of ns-a/support runs out, read from the state file."""
    db = sqlite3.connect(parking.env["ROUSE_STATE_URL"].removeprefix("sqlite:///"))
    try:
        row = db.execute(
            "SELECT expires FROM idempotency WHERE key = ?", (lease_key("ns-a", "support"),)
        ).fetchone()
    finally:
        db.close()
    return float(row[0])


@pytest.fixture
def short_lease(tmp_path: Path, broker: Endpoints) -> Iterator[Parking]:
    """A parking service whose replay lease lasts 1.5 s unless renewed."""
    service = start_parking(
        tmp_path,
        f"sqlite:///{tmp_path}/state.db",
        broker.url,
        {"ROUSE_SKILL_URL": broker.base + "/skills/{skill}", "ROUSE_REPLAY_LEASE_SECONDS": "1.5"},
    )
    yield service
    service.stop()


def test_one_replay_at_a_time(short_lease: Parking, broker: Endpoints) -> None:
    """A second replay while one runs (operator retry, a second replica, by hand) is refused,
    also when the skill takes longer to answer than the lease lasts (it is renewed)."""
    parking = short_lease
    for event_id in ("s1", "s2"):
        park(parking.url, "/park/ns-a/support/triage", binary(event_id))
    broker.hold = threading.Event()
    request = targets(broker, "triage")
    results: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: results.append(
            httpx.post(f"{parking.url}/replay/ns-a/support", json=request, timeout=60, headers=AUTH)
        )
    )
    first.start()
    assert broker.holding.wait(timeout=30)  # the first replay is delivering s1
    second = httpx.post(
        f"{parking.url}/replay/ns-a/support", json=request, timeout=30, headers=AUTH
    )
    assert (second.status_code, second.json()["busy"]) == (409, True)
    # While s1 hangs, the lease outlives its first expiry: renewed, still refusing others.
    first_expiry = lease_expiry(parking)
    wait_until(lambda: lease_expiry(parking) > first_expiry, timeout=10, what="a lease renewal")
    wait_until(lambda: time.time() > first_expiry + 0.5, timeout=10, what="the first expiry")
    third = httpx.post(f"{parking.url}/replay/ns-a/support", json=request, timeout=30, headers=AUTH)
    assert (third.status_code, third.json()["busy"]) == (409, True)
    broker.hold.set()
    first.join(timeout=60)
    assert [r.status_code for r in results] == [200]
    assert broker.ids("/skills/triage") == ["s1", "s2"]  # once each, in order
    # The lease is free again: a later replay runs (and finds nothing).
    again = httpx.post(f"{parking.url}/replay/ns-a/support", json=request, timeout=30, headers=AUTH)
    assert (again.status_code, again.json()["replayed"]) == (200, 0)


def test_schedule_ticks_parked_while_suspended_become_one_tick(
    parking: Parking, broker: Endpoints
) -> None:
    for n in range(3):
        tick = binary(
            f"tick-{n}", source="/apis/v1/namespaces/ns-a/pingsources/support-digest-cron"
        )
        cast(dict[str, str], tick["headers"])["ce-type"] = "dev.knative.sources.ping"
        park(parking.url, "/park/ns-a/support/digest", tick)
    park(parking.url, "/park/ns-a/support/digest", binary("real-1"))
    done = httpx.post(
        f"{parking.url}/replay/ns-a/support",
        json=targets(broker, "digest"),
        timeout=30,
        headers=AUTH,
    )
    assert (done.json()["replayed"], done.json()["coalesced"]) == (2, 2)
    assert broker.ids("/skills/digest") == ["tick-2", "real-1"]  # the latest tick, in its place


def test_events_survive_a_restart(tmp_path: Path, broker: Endpoints) -> None:
    state = f"sqlite:///{tmp_path}/state.db"
    first = start_parking(tmp_path, state, broker.url)
    try:
        park(first.url, "/dead-letter/ns-a/support/triage", binary("d1"))
        park(first.url, "/park/ns-a/support/triage", binary("p1"))
    finally:
        first.process.kill()
        first.process.wait()
    second = start_parking(tmp_path, state, broker.url)
    try:
        items = httpx.get(f"{second.url}/parked").json()["items"]
        assert [(i["kind"], i["eventId"]) for i in items] == [("dead-letter", "d1"), ("park", "p1")]
    finally:
        second.stop()


def test_refusals_name_the_problem(parking: Parking) -> None:
    bad_name = park(parking.url, "/park/ns-a/Support/triage", binary("e1"))
    assert (bad_name.status_code, bad_name.json()["error"]) == (400, "invalid name")
    not_event = httpx.post(f"{parking.url}/park/ns-a/support/triage", content=b"{}")
    assert not_event.status_code in (400, 415)
    assert "not a CloudEvent" in not_event.json()["detail"]
    big = binary("big", data={"x": "y" * (1024 * 1024 + 10)})
    assert park(parking.url, "/park/ns-a/support/triage", big).status_code == 413
    nothing = httpx.post(f"{parking.url}/drop/ns-a/support", json={}, headers=AUTH)
    assert nothing.status_code == 400
    assert httpx.get(f"{parking.url}/parked").json() == {"items": [], "next": None}


def test_body_limit_streamed_and_set_by_env(tmp_path: Path, broker: Endpoints) -> None:
    """ROUSE_MAX_BODY_BYTES sets the limit (match the skills': a refused dead letter is lost)."""
    service = start_parking(
        tmp_path, f"sqlite:///{tmp_path}/state.db", broker.url, {"ROUSE_MAX_BODY_BYTES": "2000"}
    )
    try:
        fits = binary("fits", data={"x": "y" * 1500})
        assert park(service.url, "/park/ns-a/support/triage", fits).status_code == 202
        over = json.dumps({"x": "y" * 2100}).encode()
        chunks = [over[i : i + 500] for i in range(0, len(over), 500)]
        headers = cast(dict[str, str], binary("over")["headers"])
        chunked = httpx.post(  # no Content-Length: refused while reading
            f"{service.url}/park/ns-a/support/triage", headers=headers, content=iter(chunks)
        )
        assert (chunked.status_code, chunked.json()["error"]) == (413, "payload too large")
        items = httpx.get(f"{service.url}/parked").json()["items"]
        assert [i["eventId"] for i in items] == ["fits"]
    finally:
        service.stop()


def test_cli_lists_replays_and_drops(parking: Parking, broker: Endpoints) -> None:
    park(parking.url, "/park/ns-a/support/triage", binary("c1"))
    park(parking.url, "/park/ns-a/support/triage", binary("c2"))
    park(parking.url, "/dead-letter/ns-a/support/triage", binary("c3"))

    listed = parking.cli("parked", "list")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert len(rows) == 3
    assert (
        "park  ns-a/support/triage  com.example.ticket.created  source=/tickets  id=c1" in rows[0]
    )
    assert "dead-letter" in rows[2]

    as_json = json.loads(parking.cli("parked", "list", "--kind", "dead-letter", "--json").stdout)
    dead_id = as_json[0]["id"]
    assert [i["eventId"] for i in as_json] == ["c3"]

    replayed = parking.cli("parked", "replay", "ns-a", "support")
    assert (replayed.returncode, replayed.stdout.strip()) == (
        0,
        "replayed 2 event(s), removed 2, 0 left",
    )
    assert broker.ids("/skills/triage") == ["c1", "c2"]  # ROUSE_SKILL_URL: the skill's address

    dropped = parking.cli("parked", "drop", "ns-a", "support", "--id", str(dead_id))
    assert (dropped.returncode, dropped.stdout.strip()) == (0, "dropped 1 event(s)")
    assert parking.cli("parked", "list").stdout.strip() == "no parked events"

    down = subprocess.run(
        [
            sys.executable,
            "-m",
            "rouse_runtime.cli",
            "parked",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode != 0
    assert "cannot reach the parking service" in down.stderr


def test_drop_and_replay_need_the_token(parking: Parking) -> None:
    park(parking.url, "/park/ns-a/support/triage", binary("t1"))
    for path in ("/replay/ns-a/support", "/drop/ns-a/support"):
        for headers in ({}, {"authorization": "Bearer wrong"}):
            refused = httpx.post(f"{parking.url}{path}", json={"all": True}, headers=headers)
            assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
    assert [i["eventId"] for i in httpx.get(f"{parking.url}/parked").json()["items"]] == ["t1"]
    dropped = httpx.post(f"{parking.url}/drop/ns-a/support", json={"all": True}, headers=AUTH)
    assert dropped.json() == {"dropped": 1}


def test_the_service_does_not_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUSE_")}
    env["ROUSE_STATE_URL"] = f"sqlite:///{tmp_path}/state.db"
    proc = subprocess.run(
        [sys.executable, "-m", "rouse_runtime.parking"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "ROUSE_PARKING_TOKEN is not set" in proc.stderr


def test_parked_is_served_a_page_at_a_time(parking: Parking) -> None:
    for n in range(5):
        park(parking.url, "/park/ns-a/support/triage", binary(f"p{n}"))
    first = httpx.get(f"{parking.url}/parked", params={"limit": 2}).json()
    assert [i["eventId"] for i in first["items"]] == ["p0", "p1"]
    second = httpx.get(f"{parking.url}/parked", params={"limit": 2, "after": first["next"]}).json()
    assert [i["eventId"] for i in second["items"]] == ["p2", "p3"]
    last = httpx.get(f"{parking.url}/parked", params={"limit": 2, "after": second["next"]}).json()
    assert ([i["eventId"] for i in last["items"]], last["next"]) == (["p4"], None)
    too_many = httpx.get(f"{parking.url}/parked", params={"limit": 5000})
    assert too_many.status_code == 422
    listed = parking.cli("parked", "list")  # the CLI follows the pages
    assert [row.split()[-1] for row in listed.stdout.splitlines()] == [f"id=p{n}" for n in range(5)]


def test_cli_lists_and_replays_a_clusters_dead_letters(parking: Parking, broker: Endpoints) -> None:
    """`rouse deadletters --cluster`: Knative's reason decoded, a replay that fails keeps the
    letter, one that succeeds removes it."""
    answer = {"error": "skill failed", "detail": "BadTicketError: ticket is missing subject, body"}
    letter = binary("d1")
    cast(dict[str, str], letter["headers"]).update(
        {
            "ce-knativeerrorcode": "500",
            "ce-knativeerrordest": broker.skill_url("triage"),
            "ce-knativeerrordata": base64.b64encode(json.dumps(answer).encode()).decode(),
        }
    )
    park(parking.url, "/dead-letter/ns-a/support/triage", letter)
    park(parking.url, "/park/ns-a/support/triage", binary("p1"))  # parked: not a dead letter

    listed = parking.cli("deadletters", "list", "--cluster")
    assert listed.returncode == 0, listed.stderr
    [row] = listed.stdout.splitlines()
    assert row.endswith(
        "ns-a/support/triage  com.example.ticket.created  id=d1  "
        "HTTP 500: skill failed: BadTicketError: ticket is missing subject, body"
    ), row
    [item] = json.loads(parking.cli("deadletters", "list", "--cluster", "--json").stdout)
    letter_id = str(item["id"])

    broker.answers["d1"] = 500
    failed = parking.cli("deadletters", "replay", letter_id, "--cluster")
    assert failed.returncode == 1
    assert f"{letter_id} not delivered, kept" in failed.stderr, failed.stderr
    del broker.answers["d1"]
    replayed = parking.cli("deadletters", "replay", letter_id, "--cluster")
    assert (replayed.returncode, replayed.stdout.strip()) == (
        0,
        f"replayed dead letter {letter_id} (com.example.ticket.created id=d1) to ns-a/support/triage",
    ), replayed.stderr
    assert broker.ids("/skills/triage") == ["d1"]
    assert parking.cli("deadletters", "list", "--cluster").stdout.strip() == "no dead letters"
    assert [i["eventId"] for i in httpx.get(f"{parking.url}/parked").json()["items"]] == ["p1"]

    unknown = parking.cli("deadletters", "replay", "999", "--cluster")
    assert unknown.returncode == 1 and "no dead letter 999" in unknown.stderr
