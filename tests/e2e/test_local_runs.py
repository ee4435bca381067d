"""Runs in local mode: the research-brief example under `rouse dev`, read with `rouse runs`.

Real processes: `rouse dev` (broker, parking API, skill processes started on
the first event) and the `rouse` CLI talking to it over HTTP. One request fans
out to three workers, the join runs once with the answers in order, and
`rouse runs list|show` tells that story; `rouse runs kill` drops everything
until it is lifted, and `rouse runs cancel` of a finished run is recorded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localdev import LocalDev, rouse, start_dev
from rouse_testing.wait import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "research-brief" / "agent.yaml"
AGENT = "research-brief"


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[LocalDev]:
    running = start_dev(EXAMPLE, tmp_path / "state")
    yield running
    running.stop()


def runs_cli(dev: LocalDev, *args: str) -> Any:
    done = rouse("runs", "--url", dev.url, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_fan_out_and_its_join_in_the_run_history(dev: LocalDev) -> None:
    sent = dev.post("com.example.brief.requested", {"topic": "heat pumps"}, id="brief-1")
    assert sent.status_code == 202, sent.text
    dev.wait_chain(sent.json()["chain"])
    runs = wait_until(
        lambda: [r for r in runs_cli(dev, "list", "--agent", AGENT)["items"]
                 if r["state"] == "completed"],
        what="the run to complete",
    )  # fmt: skip
    (run,) = runs
    assert (run["root"]["type"], run["steps"]) == ("com.example.brief.requested", 5)
    shown = runs_cli(dev, "show", run["run"], "--agent", AGENT)
    steps = [(s["skill"], s["outcome"], s["attempts"]) for s in shown["steps"]]
    assert sorted(steps) == sorted(
        [("plan", "ok", 1), ("research", "ok", 1), ("research", "ok", 1), ("research", "ok", 1),
         ("brief", "ok", 1)]
    )  # fmt: skip
    brief = next(s for s in shown["steps"] if s["skill"] == "brief")
    assert brief["reply"]["type"] == "com.example.brief.ready"
    kinds = [h["kind"] for h in shown["history"]]
    assert kinds.count("fanned_out") == 1
    assert kinds.count("emitted") == 3
    assert kinds.count("join_collected") == 2  # the third answer ran the join
    assert kinds.count("source_consulted") == 3  # the workers' own notes (ctx.note)
    # the brief the join sent: every answer, in question order
    chain = dev.get(f"/chains/{sent.json()['chain']}")
    ready = next(e for e in chain["events"] if e["type"] == "com.example.brief.ready")
    assert [line.split(":")[0] for line in ready["data"]["brief"]] == [
        "cost", "efficiency", "installation",
    ]  # fmt: skip
    # the text form, as the README shows it
    text = rouse("runs", "--url", dev.url, "show", run["run"], "--agent", AGENT)
    assert text.returncode == 0, text.stderr
    assert f"run {run['run']}  default/{AGENT}  completed" in text.stdout
    # cancelling a finished run is recorded (nothing left to stop)
    cancelled = runs_cli(dev, "cancel", run["run"], "--agent", AGENT)
    assert cancelled == {
        "run": run["run"],
        "cancelled": True,
        "already": False,
        "compensations": [],  # no step of this agent declares one
    }
    assert runs_cli(dev, "show", run["run"], "--agent", AGENT)["state"] == "cancelled"


def test_the_kill_switch_drops_events_until_lifted(dev: LocalDev) -> None:
    assert runs_cli(dev, "kill", AGENT)["killed"] is True
    sent = dev.post("com.example.brief.requested", {"topic": "kites"}, id="killed-1")
    dev.wait_chain(sent.json()["chain"])
    killed = runs_cli(dev, "list", "--agent", AGENT)["items"]
    assert [r["root"] for r in killed] == [
        {"type": "com.example.brief.requested", "id": "killed-1", "source": "/e2e"}
    ]
    shown = runs_cli(dev, "show", killed[0]["run"], "--agent", AGENT)
    assert [(h["kind"], h["skill"], h.get("reason")) for h in shown["history"]] == [
        ("dropped", "plan", "kill switch")
    ]
    assert runs_cli(dev, "kill", AGENT, "--off")["killed"] is False
    sent = dev.post("com.example.brief.requested", {"topic": "kites"}, id="after-1")
    dev.wait_chain(sent.json()["chain"])
    wait_until(
        lambda: any(
            r["state"] == "completed" for r in runs_cli(dev, "list", "--agent", AGENT)["items"]
        ),
        what="a run to complete after the switch is lifted",
    )


def test_runs_api_refuses_bad_names(dev: LocalDev) -> None:
    done = rouse("runs", "--url", dev.url, "show", "Bad_Run", "--agent", AGENT)
    assert done.returncode != 0
    assert "is not a run id" in done.stderr


TRIP = Path(__file__).resolve().parents[2] / "examples" / "trip-booking" / "agent.yaml"


@pytest.fixture
def trip(tmp_path: Path) -> Iterator[LocalDev]:
    running = start_dev(TRIP, tmp_path / "trip-state")
    yield running
    running.stop()


def run_of_root(dev: LocalDev, agent: str, event_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: next((r for r in runs_cli(dev, "list", "--agent", agent)["items"]
                      if r["root"] and r["root"]["id"] == event_id), None),
        what=f"the run of {event_id}",
    )  # fmt: skip


def test_a_dead_lettered_step_undoes_the_completed_ones(trip: LocalDev) -> None:
    sent = trip.post("com.example.trip.requested", {"to": "Atlantis"}, id="trip-1")
    trip.wait_chain(sent.json()["chain"])
    run = run_of_root(trip, "trip-booking", "trip-1")
    shown = wait_until(
        lambda: (
            (s := runs_cli(trip, "show", run["run"], "--agent", "trip-booking"))
            and any(st["skill"] == "cancel-flight" and st["outcome"] == "ok" for st in s["steps"])
            and s
        ),
        what="the flight to be cancelled",
    )
    kinds = [(h["kind"], h["skill"]) for h in shown["history"]]
    assert ("dead_lettered", "book-hotel") in kinds
    assert kinds.count(("compensation", "book-flight")) == 1
    assert kinds.index(("dead_lettered", "book-hotel")) < kinds.index(
        ("compensation", "book-flight")
    )
    hotel = next(s for s in shown["steps"] if s["skill"] == "book-hotel")
    assert (hotel["outcome"], hotel["attempts"]) == ("error", 2)  # retried once, then dead
    flight = next(s for s in shown["steps"] if s["skill"] == "book-flight")
    cancel = next(s for s in shown["steps"] if s["skill"] == "cancel-flight")
    assert cancel["reply"]["type"] == "com.example.flight.cancelled"
    chain = trip.get(f"/chains/{sent.json()['chain']}")
    cancelled = next(e for e in chain["events"] if e["type"] == "com.example.flight.cancelled")
    booked = next(e for e in chain["events"] if e["type"] == "com.example.flight.booked")
    assert cancelled["data"] == {
        "cancelled": booked["data"]["flight"],
        "undoes": f"book-flight/{flight['event']['id']}",
    }
    assert shown["state"] == "failed"


def test_cancelling_a_waiting_run_undoes_its_steps_and_it_never_resumes(trip: LocalDev) -> None:
    sent = trip.post("com.example.trip.requested", {"to": "Avalon"}, id="trip-2")
    trip.wait_chain(sent.json()["chain"])
    run = run_of_root(trip, "trip-booking", "trip-2")
    assert runs_cli(trip, "show", run["run"], "--agent", "trip-booking")["state"] == "suspended"
    cancelled = runs_cli(trip, "cancel", run["run"], "--agent", "trip-booking")
    assert [c["type"] for c in cancelled["compensations"]] == ["com.example.flight.cancel"]
    wait_until(
        lambda: any(s["skill"] == "cancel-flight" and s["outcome"] == "ok"
                    for s in runs_cli(trip, "show", run["run"], "--agent", "trip-booking")["steps"]),
        what="the compensation to run in the cancelled run",
    )  # fmt: skip
    # the confirmation comes late: the suspended step never resumes (dropped, with a record)
    chain = trip.get(f"/chains/{sent.json()['chain']}")
    flight = next(e for e in chain["events"] if e["type"] == "com.example.flight.booked")
    late = trip.post("com.example.hotel.confirmed", {}, id="confirm-1",
                     rousekey=flight["data"]["flight"])  # fmt: skip
    trip.wait_chain(late.json()["chain"])
    shown = wait_until(
        lambda: (
            (s := runs_cli(trip, "show", run["run"], "--agent", "trip-booking"))
            and any(h["kind"] == "dropped" for h in s["history"])
            and s
        ),
        what="the late confirmation to be dropped",
    )
    dropped = [h for h in shown["history"] if h["kind"] == "dropped"]
    assert [(h["skill"], h["event"]["id"], h["reason"]) for h in dropped] == [
        ("book-hotel", "confirm-1", "run cancelled")
    ]
    assert not any(s["skill"] == "book-hotel" and s["outcome"] == "ok" for s in shown["steps"])


@pytest.fixture
def short_deadline(tmp_path: Path) -> Iterator[LocalDev]:
    """The research-brief example with a one-second join deadline."""
    copy = tmp_path / "research-brief"
    shutil.copytree(EXAMPLE.parent, copy)
    agent = copy / "agent.yaml"
    agent.write_text(agent.read_text().replace("deadline: 2m", "deadline: 1s"))
    running = start_dev(agent, tmp_path / "state")
    yield running
    running.stop()


def test_a_join_whose_last_answer_never_comes_runs_at_its_deadline(
    short_deadline: LocalDev,
) -> None:
    """Two answers of three, and nothing after: the sweeper (the parking app `rouse dev`
    serves) runs the join once the deadline has passed, with the missing angle named."""
    dev = short_deadline
    part = {"rouserun": "brief-deadline", "rousejoin": "j-deadline", "rouseparts": "3"}
    for n, angle in enumerate(("cost", "efficiency")):
        data = {"topic": "kites", "angle": angle, "answer": f"answer {n}"}
        sent = dev.post("com.example.question.answered", data, id=f"a{n}", rousepart=str(n), **part)
        assert sent.status_code == 202, sent.text
    shown = wait_until(
        lambda: (
            (v := runs_cli(dev, "show", "brief-deadline", "--agent", AGENT))["state"] == "completed"
            and any(h["kind"] == "join_deadline" for h in v["history"])
            and v
        ),
        timeout=60,
        what="the join ended at its deadline",
    )
    kinds = [h["kind"] for h in shown["history"]]
    assert kinds.count("join_collected") == 2 and kinds.count("join_deadline") == 1, kinds
    [fired] = [h for h in shown["history"] if h.get("joins")]
    assert fired["joins"] == {"join": "j-deadline", "parts": 3, "missing": [2]}
    ready = wait_until(
        lambda: [e for e in dev.get("/events")["events"] if e["type"] == "com.example.brief.ready"],
        what="the brief in the broker",
    )
    assert [e["data"]["missing"] for e in ready] == [["installation"]]
