"""The parking service as a real process: durable ordered storage, replay, CLI, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import httpx
import pytest
from rouse_testing.parking import Parking, start_parking
from rouse_testing.wait import free_port

pytestmark = pytest.mark.integration


@dataclass
class Broker:
    """A real HTTP endpoint standing in for the broker ingress: records what it receives."""

    received: list[dict[str, str]] = field(default_factory=list)
    refuse_after: int | None = None
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/ns-a/default"

    def ids(self) -> list[str]:
        return [r["ce-id"] for r in self.received]


@pytest.fixture
def broker() -> Iterator[Broker]:
    state = Broker()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if state.refuse_after is not None and len(state.received) >= state.refuse_after:
                self.send_response(503)
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.received.append({**headers, "path": self.path, "body": body.decode()})
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()


@pytest.fixture
def parking(tmp_path: Path, broker: Broker) -> Iterator[Parking]:
    service = start_parking(tmp_path, f"sqlite:///{tmp_path}/state.db", broker.url)
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


def test_parked_events_are_stored_once_in_order_and_replayed_in_order(
    parking: Parking, broker: Broker
) -> None:
    for n in range(1, 6):
        request = binary(f"e{n}") if n % 2 else structured(f"e{n}")
        answer = park(parking.url, "/park/ns-a/support/triage", request)
        assert (answer.status_code, answer.json()) == (202, {"stored": True, "kind": "park"})
    # A sink retry of the same event is not stored twice.
    again = park(parking.url, "/park/ns-a/support/triage", binary("e3"))
    assert again.json() == {"stored": False, "kind": "park"}
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

    broker.refuse_after = 2  # the broker goes away mid-replay: order must hold
    first = httpx.post(f"{parking.url}/replay/ns-a/support", json={"broker": "default"})
    assert first.status_code == 502
    assert first.json()["replayed"] == 2
    assert first.json()["removed"] == 3  # e2's copy parked by the draft skill went too
    assert first.json()["remaining"] == 3
    assert "HTTP 503" in first.json()["error"]

    broker.refuse_after = None
    second = httpx.post(f"{parking.url}/replay/ns-a/support", json={"broker": "default"})
    assert second.json() == {"replayed": 3, "removed": 3, "remaining": 0, "error": None}
    assert broker.ids() == ["e1", "e2", "e3", "e4", "e5"]  # in order, e2 sent once
    assert broker.received[0]["ce-type"] == "com.example.ticket.created"
    assert json.loads(broker.received[1]["body"]) == {"n": "e2"}
    left = httpx.get(f"{parking.url}/parked").json()["items"]
    assert [(i["agent"], i["eventId"]) for i in left] == [("other", "x1")]


def test_events_survive_a_restart(tmp_path: Path, broker: Broker) -> None:
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
    nothing = httpx.post(f"{parking.url}/drop/ns-a/support", json={})
    assert nothing.status_code == 400
    assert httpx.get(f"{parking.url}/parked").json() == {"items": []}


def test_body_limit_streamed_and_set_by_env(tmp_path: Path, broker: Broker) -> None:
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


def test_cli_lists_replays_and_drops(parking: Parking, broker: Broker) -> None:
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
    assert broker.ids() == ["c1", "c2"]

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
