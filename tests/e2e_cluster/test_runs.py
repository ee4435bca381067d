"""Issue 15 on the real node: a fan-in join under concurrent deliveries through the Knative
broker, a join ended at its deadline by the cluster's sweeper, and `rouse runs cancel` / the kill
switch on a running chain.

examples/research-brief and examples/trip-booking are applied by hack/kind/example.sh (the script
a kind user runs), which also creates the event display (a Trigger with no filter: every event the
broker delivers). The runs are read with the `rouse runs` CLI through a port-forward to the
parking service, as the README tells a user to.

How each test can fail: the join test counts the brief.ready replies of its join at the display
(two firings, or a firing with parts missing, fail it) and reads the run's history (each part
collected once, the rest recorded as duplicates); the deadline test waits for a brief that only
the sweeper can cause (no third part is ever sent) and checks what it says is missing; the cancel
test fails if the late confirmation resumes the suspended hotel step (a trip.booked at the
display, no `dropped` record), if the run does not show `cancelled`, or if the flight is not
cancelled (no flight.cancelled); the kill switch test fails if a trip sent while it is on is
booked. (The broken variants were tried at the lower tiers, not on the node: without the sweeper
tests/integration/test_runs_sweeper.py times out waiting for the brief.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from rouse_runtime.runs.recorder import STOP_POLL_SECONDS
from rouse_testing.node import (
    Node,
    PortForward,
    display_events,
    example,
    parking_token,
    script,
    send,
)
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
ANSWERED = "com.example.question.answered"
BRIEF_READY = "com.example.brief.ready"
TRIP = "com.example.trip.requested"
PARTS = 5
DEADLINE = "30s"  # long enough for a storm's parts to all arrive, short enough to wait for
COPIES = 4  # each part's result delivered this many times: twice the same event, twice a new id
SKILL_PORT = 8080  # a skill container's port (the operator's Knative Service)


@pytest.fixture(scope="module")
def rouse(real_node: Node) -> str:
    script(real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    return ROUSE_NAMESPACE


@pytest.fixture(scope="module")
def research(real_node: Node, rouse: str) -> Iterator[str]:
    """research-brief by example.sh (its fan-out and join asserted), its join skill then kept
    at two pods, so concurrent parts land in different processes, with a shorter deadline."""
    with example(real_node, "research-brief") as namespace:
        agent = real_node.get("agent", "research-brief", namespace)
        assert agent is not None
        brief = next(i for i, s in enumerate(agent["spec"]["skills"]) if s["name"] == "brief")
        two_pods = [
            {"op": "add", "path": f"/spec/skills/{brief}/scaling", "value": {"min": 2, "max": 2}},
            {"op": "add", "path": f"/spec/skills/{brief}/join", "value": {"deadline": DEADLINE}},
        ]
        real_node.kubectl(
            "-n", namespace, "patch", "agent", "research-brief", "--type=json",
            "-p", json.dumps(two_pods),
        )  # fmt: skip
        wait_until(
            lambda: two_brief_pods(real_node, namespace),
            timeout=300,
            interval=2,
            what="the brief skill's latest Revision Ready with two pods",
        )
        yield namespace


def two_brief_pods(running: Node, namespace: str) -> bool:
    """The brief skill's latest Revision Ready with the test's deadline and two Ready pods."""
    ksvc = running.get("ksvc", "research-brief-brief", namespace)
    if ksvc is None:
        return False
    status = ksvc.get("status", {})
    revision = status.get("latestReadyRevisionName")
    containers = ksvc["spec"]["template"]["spec"]["containers"]
    if revision is None or revision != status.get("latestCreatedRevisionName"):
        return False
    env = {e["name"]: e.get("value") for e in containers[0].get("env", [])}
    if env.get("ROUSE_JOIN_DEADLINE") != "30":  # the test's deadline (DEADLINE) is served
        return False
    return len(ready_pods(running, namespace, f"serving.knative.dev/revision={revision}")) >= 2


@pytest.fixture(scope="module")
def trips(real_node: Node, rouse: str) -> Iterator[str]:
    """trip-booking by example.sh (a trip to Lisbon booked: flight, then hotel)."""
    with example(real_node, "trip-booking") as namespace:
        yield namespace


def rouse_runs(parking: PortForward, token: str, *args: str) -> Any:
    """`rouse runs ... --json` against the cluster's parking service (through the forward)."""
    proc = subprocess.run(
        [sys.executable, "-m", "rouse_runtime.cli", "runs", "--url", parking.url, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"ROUSE_PARKING_TOKEN": token, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, f"rouse runs {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return json.loads(proc.stdout)


def show(parking: PortForward, token: str, namespace: str, agent: str, run: str) -> Any:
    return rouse_runs(parking, token, "show", run, "--agent", agent, "--namespace", namespace)


def stop_marks_read_at(running: Node, namespace: str, pod: str) -> float:
    """A skill pod's `rouse_stop_marks_read_timestamp_seconds`, through the API server's proxy."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}:{SKILL_PORT}/proxy/metrics"
    text = running.kubectl("get", "--raw", path).stdout
    [sample] = [
        line
        for line in text.splitlines()
        if line.startswith("rouse_stop_marks_read_timestamp_seconds{")
    ]
    return float(sample.split()[-1])


def marks_seen(running: Node, namespace: str, agent: str, since: float) -> None:
    """Wait until every Ready skill pod of the agent acts on the stop marks as set at `since`:
    it read them after (its gauge is past `since`), or its view is older than STOP_POLL_SECONDS,
    so its next event reads them again (a pod reads only when events come; a new pod has no
    view)."""

    def seen() -> dict[str, str] | None:
        now, views = time.time(), {}
        for name in ready_pods(running, namespace, f"rouse.dev/agent={agent}"):
            read = stop_marks_read_at(running, namespace, name)
            if read >= since:
                views[name] = f"read {read - since:.2f} s after"
            elif now - read >= STOP_POLL_SECONDS:
                views[name] = "view expired"
            else:
                return None
        return views or {"(no pod)": "none serving"}

    views = wait_until(
        seen,
        timeout=30,
        interval=0.2,
        what=f"every pod of {agent} reading the stop marks since they were set",
    )
    print(f"\nstop marks of {agent}: {views}")


def ready_pods(running: Node, namespace: str, selector: str) -> list[str]:
    """Names of the pods matching `selector` that are Ready and not terminating."""
    return [
        p["metadata"]["name"]
        for p in running.items("pods", namespace, selector)
        if p["metadata"].get("deletionTimestamp") is None
        and p.get("status", {}).get("containerStatuses")
        and all(c.get("ready") for c in p["status"]["containerStatuses"])
    ]


def of_type(running: Node, namespace: str, event_type: str) -> list[dict[str, Any]]:
    return [e for e in display_events(running, namespace) if e.get("type") == event_type]


def test_join_runs_once_with_every_part_under_a_duplicate_storm(
    real_node: Node, research: str, broker: PortForward, parking: PortForward
) -> None:
    """PARTS results of one fan-out, each sent COPIES times at once through the broker (the same
    event twice: a redelivery; a new id twice: a duplicate result) to a join skill with two
    pods: it runs once, with every part in part order, and the history names the duplicates."""
    namespace = research
    token = parking_token(real_node, ROUSE_NAMESPACE)
    join, run = uuid.uuid4().hex, f"storm-{uuid.uuid4().hex[:8]}"
    angles = [f"angle-{i}" for i in range(PARTS)]
    deliveries = []
    for part, angle in enumerate(angles):
        data = {"topic": "storm", "angle": angle, "answer": f"answer {part}"}
        extensions = {
            "rouserun": run,
            "rousejoin": join,
            "rousepart": str(part),
            "rouseparts": str(PARTS),
        }
        for copy in range(COPIES):
            event_id = f"{join}-{part}" if copy < 2 else f"{join}-{part}-again-{copy}"
            deliveries.append((data, event_id, extensions))
    start = threading.Barrier(len(deliveries))
    errors: list[BaseException] = []

    def deliver(data: dict[str, Any], event_id: str, extensions: dict[str, str]) -> None:
        start.wait()
        try:
            send(broker, namespace, ANSWERED, data, event_id=event_id, extensions=extensions)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=d) for d in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    def briefs() -> list[dict[str, Any]]:
        return [e for e in of_type(real_node, namespace, BRIEF_READY) if e.get("rouserun") == run]

    wait_until(briefs, timeout=180, interval=2, what="the join's brief at the event display")

    sent = {event_id for _, event_id, _ in deliveries}

    def about(view: Any) -> dict[str, set[str]]:
        kinds: dict[str, set[str]] = {}
        for record in view["history"]:
            kinds.setdefault(record["event"]["id"], set()).add(record["kind"])
        return kinds

    def settled() -> Any:
        view = show(parking, token, namespace, "research-brief", run)
        return view if set(about(view)) >= sent and view["state"] == "completed" else None

    view = wait_until(settled, timeout=120, interval=2, what="every delivery in the run's history")
    history = view["history"]
    kinds = Counter(r["kind"] for r in history)
    fired = [r for r in history if r["kind"] in ("ran", "started") and r.get("joins")]
    print(
        f"\njoin storm: {len(deliveries)} deliveries of {PARTS} parts to two pods; history "
        f"{dict(sorted(kinds.items()))}; briefs at the display: {len(briefs())}"
    )
    # Knative delivers at least once: the join's one reply may reach the display twice (a
    # retried hop), under the same event id. The join ran once if every brief is that one event.
    seen = briefs()
    by_id = {e["id"]: e for e in seen}
    assert len(by_id) == 1, f"{len(by_id)} different briefs: {seen}"
    [brief] = by_id.values()
    assert brief["data"]["brief"] == [f"{a}: answer {i}" for i, a in enumerate(angles)]
    assert brief["data"]["missing"] == []
    assert len(fired) == 1, fired
    assert fired[0]["joins"] == {"join": join, "parts": PARTS, "missing": []}
    # Each part went in once (the last one fired the join); every other copy is recorded as
    # a duplicate: a redelivery of the same event, or a second result for a part already in.
    collected = [r["part"] for r in history if r["kind"] == "join_collected"]
    assert len(collected) == len(set(collected)) == PARTS - 1, collected
    taken = {r["event"]["id"] for r in history if r["kind"] == "join_collected"}
    taken.add(fired[0]["event"]["id"])
    assert len(taken) == PARTS, taken
    duplicates = {"duplicate", "join_duplicate", "join_late"}
    for event_id, seen in about(view).items():
        if event_id not in taken:
            assert seen <= duplicates, (event_id, seen)
    # Of each part's three ids one went in; the other two are second results for it.
    assert kinds["join_duplicate"] + kinds["join_late"] == 2 * PARTS, kinds


def test_a_join_missing_a_part_runs_at_its_deadline(
    real_node: Node, research: str, broker: PortForward, parking: PortForward
) -> None:
    """Two of three results, and the third never comes: the parking service's sweeper ends
    the join at its deadline; the brief says what is missing, once."""
    namespace = research
    token = parking_token(real_node, ROUSE_NAMESPACE)
    join, run = uuid.uuid4().hex, f"deadline-{uuid.uuid4().hex[:8]}"
    for part in (0, 1):
        data = {"topic": "deadline", "angle": f"angle-{part}", "answer": f"answer {part}"}
        extensions = {"rouserun": run, "rousejoin": join, "rousepart": str(part), "rouseparts": "3"}
        send(broker, namespace, ANSWERED, data, event_id=f"{join}-{part}", extensions=extensions)
    briefs = wait_until(
        lambda: [e for e in of_type(real_node, namespace, BRIEF_READY) if e.get("rouserun") == run],
        timeout=180,
        interval=2,
        what="the brief of a join missing a part, at the event display",
    )
    view = wait_until(
        lambda: (
            (v := show(parking, token, namespace, "research-brief", run))["state"] == "completed"
            and [r for r in v["history"] if r["kind"] == "join_deadline"]
            and v
        ),
        timeout=60,
        interval=2,
        what="the join's end at its deadline in the run's history",
    )
    print(f"\njoin deadline: history {[r['kind'] for r in view['history']]}")
    [brief] = briefs
    assert brief["data"]["missing"] == ["installation"]  # the example's third angle
    assert brief["data"]["brief"] == ["angle-0: answer 0", "angle-1: answer 1"]
    fired = [r for r in view["history"] if r.get("joins")]
    assert [r["joins"] for r in fired] == [{"join": join, "parts": 3, "missing": [2]}]


def test_cancel_drops_pending_events_and_never_resumes_a_suspended_step(
    real_node: Node, trips: str, broker: PortForward, parking: PortForward
) -> None:
    """A trip to Avalon: the flight is booked, the hotel step waits for a confirmation. `rouse
    runs cancel` stops the run: the flight's compensation runs, the late confirmation and a
    later event of the run are dropped with a record, the hotel step never resumes, and `rouse
    runs show` says cancelled."""
    namespace = trips
    token = parking_token(real_node, ROUSE_NAMESPACE)
    run = f"trip-{uuid.uuid4().hex[:8]}"
    send(broker, namespace, TRIP, {"to": "Avalon"}, extensions={"rouserun": run})

    def suspended() -> Any:
        view = show(parking, token, namespace, "trip-booking", run)
        return view if view["state"] == "suspended" else None

    wait_until(suspended, timeout=180, interval=2, what="the hotel step suspended")
    [booked] = [
        e["data"]
        for e in of_type(real_node, namespace, "com.example.flight.booked")
        if e.get("rouserun") == run
    ]

    answer = rouse_runs(
        parking, token, "cancel", run, "--agent", "trip-booking", "--namespace", namespace
    )
    assert answer["cancelled"] is True and answer["already"] is False, answer
    assert [c["type"] for c in answer["compensations"]] == ["com.example.flight.cancel"], answer
    marks_seen(real_node, namespace, "trip-booking", since=time.time())

    # The confirmation the hotel step waits for (as a hotel sends it: no run of its own, only
    # the key the step waits on), and a later event of the run: both dropped.
    send(
        broker, namespace, "com.example.hotel.confirmed", {"confirmed": True},
        extensions={"rousekey": booked["flight"]},
    )  # fmt: skip
    send(
        broker, namespace, "com.example.flight.booked", booked, extensions={"rouserun": run}
    )  # fmt: skip

    def settled() -> Any:
        view = show(parking, token, namespace, "trip-booking", run)
        dropped = [r for r in view["history"] if r["kind"] == "dropped"]
        cancelled = [
            e for e in of_type(real_node, namespace, "com.example.flight.cancelled")
            if e.get("rouserun") == run
        ]  # fmt: skip
        return (view, dropped) if len(dropped) >= 2 and cancelled else None

    view, dropped = wait_until(
        settled, timeout=180, interval=2, what="both events dropped and the flight cancelled"
    )
    print(
        f"\ncancel: history {[r['kind'] for r in view['history']]}; dropped "
        f"{[(r['event']['type'], r.get('reason')) for r in dropped]}"
    )
    assert view["state"] == "cancelled"
    assert {r["event"]["type"] for r in dropped} == {
        "com.example.hotel.confirmed",
        "com.example.flight.booked",
    }
    assert all(r["reason"] == "run cancelled" for r in dropped), dropped
    [undo] = [r for r in view["history"] if r["kind"] == "compensation"]
    assert (undo["type"], undo["why"]) == ("com.example.flight.cancel", "cancelled"), undo
    assert not [
        e for e in of_type(real_node, namespace, "com.example.trip.booked")
        if e.get("rouserun") == run
    ], "the suspended hotel step resumed after the cancel"  # fmt: skip
    again = rouse_runs(
        parking, token, "cancel", run, "--agent", "trip-booking", "--namespace", namespace
    )
    assert again["already"] is True


def test_kill_switch_drops_every_new_run_until_lifted(
    real_node: Node, trips: str, broker: PortForward, parking: PortForward
) -> None:
    namespace = trips
    token = parking_token(real_node, ROUSE_NAMESPACE)
    killed = rouse_runs(parking, token, "kill", "trip-booking", "--namespace", namespace)
    assert killed["killed"] is True
    marks_seen(real_node, namespace, "trip-booking", since=time.time())
    try:
        run = f"killed-{uuid.uuid4().hex[:8]}"
        send(broker, namespace, TRIP, {"to": "Lisbon"}, extensions={"rouserun": run})

        def dropped() -> Any:
            view = show(parking, token, namespace, "trip-booking", run)
            return [r for r in view["history"] if r["kind"] == "dropped"]

        [record] = wait_until(dropped, timeout=120, interval=2, what="the trip dropped")
        assert record["reason"] == "kill switch"
    finally:
        lifted = rouse_runs(
            parking, token, "kill", "trip-booking", "--namespace", namespace, "--off"
        )
    assert lifted["killed"] is False
    marks_seen(real_node, namespace, "trip-booking", since=time.time())
    after = f"after-{uuid.uuid4().hex[:8]}"
    send(broker, namespace, TRIP, {"to": "Lisbon"}, extensions={"rouserun": after})
    wait_until(
        lambda: [
            e for e in of_type(real_node, namespace, "com.example.trip.booked")
            if e.get("rouserun") == after
        ],
        timeout=120,
        interval=2,
        what="a trip booked once the kill switch is off",
    )  # fmt: skip
    assert not [
        e for e in of_type(real_node, namespace, "com.example.flight.booked")
        if e.get("rouserun") == run
    ], "a trip sent while the kill switch was on was booked"  # fmt: skip
