"""`rouse dev` end to end: real broker process, real skill runtime processes, real HTTP."""

from __future__ import annotations

import base64
import itertools
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from localdev import LocalDev, alive, attempts, descendants, rouse, start_dev, write_agent
from prometheus_client.parser import text_string_to_metric_families
from rouse_runtime.agentspec import AgentInvalid, validate_agent
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RETENTION = 2.0  # seconds an idle `echo` process lives
HOLD_MAX = 3


def e2e_agent(work: Path) -> dict[str, Any]:
    def skill(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "handler": extra.pop("handler", f"e2e_skills:{name}"),
            "events": [{"type": f"e2e.{name}"}],
            "reply": {"type": f"e2e.{name}.done"},
            **extra,
        }

    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "e2e"},
        "spec": {
            "image": "example.invalid/e2e:1",
            "env": [{"name": "E2E_WORK", "value": str(work)}],
            "skills": [
                skill("echo", scaling={"max": 2, "retention": f"{RETENTION:g}s"}),
                skill("hold", concurrency=1, scaling={"max": HOLD_MAX, "retention": "1s"}),
                skill(
                    "flaky",
                    scaling={"max": 1, "retention": "30s"},
                    delivery={
                        "retries": 2,
                        "backoffPolicy": "linear",
                        "backoffDelay": "PT0.3S",
                        "deadLetter": True,
                    },
                ),
                skill(
                    "warm",
                    handler="e2e_skills:echo",
                    scaling={"min": 1, "max": 1, "retention": "1s"},
                ),
                skill(
                    "crashy",
                    scaling={"max": 1, "retention": "30s"},
                    delivery={"retries": 0, "deadLetter": True},
                ),
                skill(
                    "broken",
                    handler="e2e_skills:does_not_exist",
                    delivery={"retries": 1, "backoffDelay": "PT0.1S", "deadLetter": True},
                ),
            ],
        },
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-work")


@pytest.fixture(scope="module")
def dev(work: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDev]:
    base = tmp_path_factory.mktemp("e2e-agent")
    agent_file = write_agent(base / "agent", e2e_agent(work))
    running = start_dev(agent_file, base / "state")
    yield running
    pids = descendants(running.proc.pid)
    assert running.stop() == 0, running.logs()
    leftover = [pid for pid in pids if alive(pid)]
    assert leftover == [], f"skill processes left after rouse dev stopped: {leftover}"


def test_scale_from_zero_to_one_and_back_to_zero(dev: LocalDev) -> None:
    assert dev.skill("echo")["processes"] == []
    assert dev.pids("echo") == set()

    answer = dev.post("e2e.echo", {"hello": "world"})
    assert answer.status_code == 202, answer.text
    chain = dev.wait_chain(answer.json()["chain"])

    delivery = chain["events"][0]["deliveries"][0]
    assert delivery["outcome"] == "replied" and delivery["cold"] is True
    reply = chain["events"][1]
    assert reply["type"] == "e2e.echo.done"
    assert reply["data"]["echo"] == {"hello": "world"}
    pool = dev.skill("echo")
    assert pool["starts"] == 1
    assert [p["pid"] for p in pool["processes"]] == [reply["data"]["pid"]]
    assert reply["data"]["pid"] in descendants(dev.proc.pid)  # a real process of rouse dev

    # Warm: a second event is served by the same process, no new start.
    second = dev.wait_chain(dev.post("e2e.echo", {"n": 2}).json()["chain"])
    assert second["events"][0]["deliveries"][0]["cold"] is False
    assert second["events"][1]["data"]["pid"] == reply["data"]["pid"]
    idle_from = time.monotonic()
    assert len(dev.skill("echo")["processes"]) == 1  # idle, but within its retention period

    # Gone after the retention period (2 s), well before the 30 s local default would stop it.
    wait_until(
        lambda: dev.skill("echo")["processes"] == [], timeout=20, what="echo to scale to zero"
    )
    # Loose lower bound (the test sees "idle" a little after the process does).
    assert time.monotonic() - idle_from >= RETENTION * 0.5, "stopped before its retention period"
    wait_until(lambda: not alive(reply["data"]["pid"]), timeout=10, what="the echo process to exit")
    assert dev.skill("echo")["starts"] == 1


def test_scaling_min_keeps_a_process_warm_past_its_retention(dev: LocalDev) -> None:
    def warm_process() -> dict[str, Any] | None:
        processes = dev.skill("warm")["processes"]
        return processes[0] if processes and processes[0]["state"] == "ready" else None

    started = wait_until(
        warm_process, timeout=60, what="the scaling.min process to start with rouse dev"
    )
    assert started["served"] == 0  # started by rouse dev, not by an event
    chain = dev.wait_chain(dev.post("e2e.warm", {}).json()["chain"])
    assert chain["events"][0]["deliveries"][0]["cold"] is False
    assert chain["events"][1]["data"]["pid"] == started["pid"]

    def idle_past_retention() -> dict[str, Any] | None:
        process = warm_process()
        return process if process and process["idleFor"] >= 1.5 else None

    still = wait_until(idle_past_retention, timeout=30, what="the warm process to idle past 1.5 s")
    assert still["pid"] == started["pid"]
    assert dev.skill("warm")["starts"] == 1


def test_burst_above_concurrency_scales_out_to_max(dev: LocalDev, work: Path) -> None:
    events = 5
    chains = []
    for n in range(events):
        answer = dev.post("e2e.hold", {"n": n})
        assert answer.status_code == 202, answer.text
        chains.append(answer.json()["chain"])

    seen: list[int] = []

    def at_max() -> bool:
        pool = dev.skill("hold")
        seen.append(len(pool["processes"]))
        ready = [p for p in pool["processes"] if p["state"] == "ready"]
        return len(ready) == HOLD_MAX and pool["inflight"] == events

    wait_until(at_max, timeout=60, what=f"{HOLD_MAX} hold processes")
    assert max(seen) == HOLD_MAX
    assert len(dev.pids("hold") & descendants(dev.proc.pid)) == HOLD_MAX
    (work / "gate").touch()

    results = [dev.wait_chain(chain) for chain in chains]
    served_by = {r["events"][1]["data"]["pid"] for r in results}
    assert sorted(r["events"][1]["data"]["n"] for r in results) == list(range(events))
    assert len(served_by) == HOLD_MAX
    # concurrency: 1 held: no process ever had two events at once
    assert {r["events"][1]["data"]["maxInflight"] for r in results} == {1}
    assert dev.skill("hold")["starts"] == HOLD_MAX  # never more than scaling.max
    wait_until(
        lambda: dev.skill("hold")["processes"] == [], timeout=30, what="hold to scale to zero"
    )


def test_failing_skill_is_retried_with_backoff_then_dead_lettered_and_replayed(
    dev: LocalDev, work: Path
) -> None:
    answer = dev.post("e2e.flaky", {"order": 7})
    assert answer.status_code == 202, answer.text
    chain = dev.wait_chain(answer.json()["chain"])
    delivery = chain["events"][0]["deliveries"][0]
    assert delivery["outcome"] == "dead_lettered"
    assert delivery["attempts"] == 3  # 1 + retries
    assert delivery["status"] == 500

    tries = [a for a in attempts(work) if a["id"] == answer.json()["id"]]
    assert len(tries) == 3
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(tries)]
    # linear backoff, PT0.3S: 0.3 s before retry 1, 0.6 s before retry 2
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps
    assert gaps[1] > gaps[0]

    listed = rouse("deadletters", "list", "--state-dir", str(dev.state_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    # other tests of this module dead-letter other skills' events: look at flaky's only
    letters = [d for d in json.loads(listed.stdout) if d["skill"] == "flaky"]
    # The parking queue's dead letters, as Knative's dead-letter sink stores them in a cluster.
    assert [(d["kind"], d["namespace"], d["eventId"]) for d in letters] == [
        ("dead-letter", "default", answer.json()["id"])
    ]
    failed = letters[0]["event"]
    assert failed["data"] == {"order": 7}
    assert failed["knativeerrorcode"] == "500"
    assert "flaky is not fixed yet" in base64.b64decode(failed["knativeerrordata"]).decode()
    text = rouse("deadletters", "list", "--state-dir", str(dev.state_dir))
    assert f"{letters[0]['id']}  " in text.stdout and "e2e.flaky" in text.stdout
    assert "500: " in text.stdout

    # Still failing: the replayer keeps the letter (as in a cluster), nothing is lost.
    again = rouse("deadletters", "replay", str(letters[0]["id"]), "--broker", dev.url)
    assert again.returncode == 1 and "refused" in again.stderr, again.stdout + again.stderr
    still = json.loads(
        rouse("deadletters", "list", "--state-dir", str(dev.state_dir), "--json").stdout
    )
    assert [d["id"] for d in still if d["skill"] == "flaky"] == [letters[0]["id"]]

    (work / "fixed").touch()
    replay = rouse("deadletters", "replay", str(letters[0]["id"]), "--broker", dev.url, "--wait")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "flaky: replied e2e.flaky.done" in replay.stdout
    left = json.loads(
        rouse("deadletters", "list", "--state-dir", str(dev.state_dir), "--json").stdout
    )
    assert letters[0]["id"] not in [d["id"] for d in left], "a replayed dead letter stayed"


def test_unroutable_event_is_reported(dev: LocalDev) -> None:
    answer = dev.post("e2e.nobody-listens", {"x": 1})
    assert answer.status_code == 404
    body = answer.json()
    assert "no trigger of agent 'e2e' matches type='e2e.nobody-listens'" in body["error"]
    assert {"skill": "echo", "filter": {"type": "e2e.echo"}} in body["triggers"]
    wait_until(
        lambda: "UNROUTABLE e2e.nobody-listens" in dev.logs(), timeout=10, what="the log line"
    )

    sent = rouse("send", "e2e.nobody-listens", "--data", "{}", "--broker", dev.url)
    assert sent.returncode == 1
    assert "not delivered: no trigger of agent 'e2e' matches" in sent.stderr


def test_a_process_that_dies_mid_request_is_replaced(dev: LocalDev) -> None:
    # The runtime keeps the crashed event's idempotency claim for its lease (timeoutSeconds + 30 s),
    # so a redelivery of that same event waits; a new event shows the replacement process.
    crashed = dev.wait_chain(dev.post("e2e.crashy", {"n": 1}).json()["chain"])
    delivery = crashed["events"][0]["deliveries"][0]
    assert (delivery["outcome"], delivery["attempts"], delivery["status"]) == (
        "dead_lettered",
        1,
        None,
    )
    assert "Server disconnected" in delivery["error"]
    wait_until(
        lambda: "e2e-crashy#1 exited unexpectedly with code 3" in dev.logs(),
        timeout=10,
        what="exit log",
    )

    served = dev.wait_chain(dev.post("e2e.crashy", {"n": 2}).json()["chain"])
    assert served["events"][0]["deliveries"][0]["outcome"] == "replied"
    assert served["events"][0]["deliveries"][0]["cold"] is True
    pool = dev.skill("crashy")
    assert pool["starts"] == 2
    assert [p["pid"] for p in pool["processes"]] == [served["events"][1]["data"]["pid"]]


def test_structured_mode_event_is_routed(dev: LocalDev) -> None:
    event = {
        "specversion": "1.0",
        "id": "structured-1",
        "type": "e2e.echo",
        "source": "/e2e/structured",
        "datacontenttype": "application/json",
        "data": {"mode": "structured"},
    }
    answer = httpx.post(
        f"{dev.url}/",
        json=event,
        headers={"content-type": "application/cloudevents+json"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["routedTo"] == ["echo"]
    chain = dev.wait_chain(answer.json()["chain"])
    assert chain["events"][1]["data"]["echo"] == {"mode": "structured"}


def test_skill_whose_handler_cannot_load_fails_fast_into_the_dead_letters(dev: LocalDev) -> None:
    began = time.monotonic()
    answer = dev.post("e2e.broken", {"x": 1})
    assert answer.status_code == 202, answer.text
    chain = dev.wait_chain(answer.json()["chain"], timeout=60)
    delivery = chain["events"][0]["deliveries"][0]
    assert (delivery["outcome"], delivery["attempts"], delivery["status"]) == (
        "dead_lettered",
        2,
        None,
    )
    assert "handler not loaded" in delivery["error"] and "does_not_exist" in delivery["error"]
    assert time.monotonic() - began < 30, (
        "a handler that cannot load must not wait for a start timeout"
    )
    wait_until(
        lambda: dev.skill("broken")["processes"] == [], timeout=15, what="broken processes gone"
    )


def test_malformed_event_is_refused(dev: LocalDev) -> None:
    answer = httpx.post(f"{dev.url}/", content=b"{}", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert "not a CloudEvent" in answer.json()["error"]


def test_metrics_of_broker_and_skills(dev: LocalDev) -> None:
    chain = dev.wait_chain(dev.post("e2e.echo", {"m": 1}).json()["chain"])
    assert chain["events"][0]["deliveries"][0]["outcome"] == "replied"
    broker = httpx.get(f"{dev.url}/metrics", timeout=10)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(broker.text)
        for s in family.samples
    }
    labels = (("agent", "e2e"), ("outcome", "replied"), ("skill", "echo"))
    assert samples[("rouse_local_deliveries_total", labels)] >= 1
    assert samples[("rouse_local_cold_starts_total", (("agent", "e2e"), ("skill", "echo")))] >= 1

    process = dev.skill("echo")["processes"][0]
    skill_metrics = httpx.get(process["metrics"], timeout=10).text
    names = {s.name for f in text_string_to_metric_families(skill_metrics) for s in f.samples}
    assert "rouse_invocations_total" in names


def test_sigterm_stops_every_skill_process(work: Path, tmp_path: Path) -> None:
    agent_file = write_agent(tmp_path / "agent", e2e_agent(work))
    running = start_dev(agent_file, tmp_path / "state")
    chain = running.wait_chain(running.post("e2e.echo", {}).json()["chain"])
    pid = chain["events"][1]["data"]["pid"]
    assert alive(pid)
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=30) == 0
    wait_until(lambda: not alive(pid), timeout=10, what="the skill process to stop with rouse dev")


def _schema_errors(agent: dict[str, Any]) -> None:
    agent["spec"]["skills"][1]["name"] = "Not_A_DNS_Label"
    agent["spec"]["skills"][2]["delivery"]["backoffPolicy"] = "sometimes"


def _cel_errors(agent: dict[str, Any]) -> None:
    agent["spec"]["skills"][0]["scaling"] = {"min": 3, "max": 1}


@pytest.mark.parametrize(
    ("breakage", "count", "words"),
    [
        (_schema_errors, 2, ["spec.skills[1].name", "spec.skills[2].delivery.backoffPolicy"]),
        (_cel_errors, 1, ["scaling.min must be less than or equal to scaling.max"]),
    ],
    ids=["schema", "cel"],
)
def test_invalid_agent_file_is_refused_with_the_crd_messages(
    tmp_path: Path, breakage: Any, count: int, words: list[str]
) -> None:
    agent = e2e_agent(tmp_path)
    breakage(agent)
    agent_file = write_agent(tmp_path / "agent", agent)
    with pytest.raises(AgentInvalid) as expected:
        validate_agent(agent)
    assert len(expected.value.errors) == count
    for word in words:
        assert any(word in error for error in expected.value.errors), expected.value.errors

    result = rouse("dev", str(agent_file), "--port", "0", timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"rouse dev: {agent_file} is not a valid Agent:\n")
    for message in expected.value.errors:
        assert f"\n  {message}\n" in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    agent_file = write_agent(tmp_path / "agent", e2e_agent(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = rouse(
            "dev", str(agent_file), "--port", str(port), "--state-dir", str(tmp_path / "s")
        )
    assert result.returncode == 1
    assert f"rouse dev: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "pick another --port" in result.stderr


def test_support_triage_chain_end_to_end(tmp_path: Path) -> None:
    running = start_dev(REPO / "examples" / "support-triage" / "agent.yaml", tmp_path / "state")
    try:
        ticket = {
            "id": "T-42",
            "customer": "Ada",
            "subject": "Checkout is down",
            "body": "Every payment fails with a 500 error for all users since 10:00",
        }
        sent = rouse(
            "send", "com.example.ticket.created", "--data", json.dumps(ticket),
            "--broker", running.url, "--wait", "--json",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr + running.logs()[-3000:]
        chain = json.loads(sent.stdout)
        by_type = {e["type"]: e for e in chain["events"]}
        assert set(by_type) == {
            "com.example.ticket.created",
            "com.example.ticket.triaged",
            "com.example.reply.drafted",
            "com.example.ticket.urgent",
            "com.example.ticket.escalated",
        }
        triaged = by_type["com.example.ticket.triaged"]["data"]
        assert (triaged["category"], triaged["priority"], triaged["method"]) == (
            "outage",
            "urgent",
            "rules",
        )
        drafted = by_type["com.example.reply.drafted"]["data"]
        assert drafted["ticketId"] == "T-42" and drafted["method"] == "template"
        assert drafted["reply"].startswith("Hi Ada,") and "within 1 hour" in drafted["reply"]
        assert by_type["com.example.ticket.escalated"]["data"] == {
            "ticketId": "T-42",
            "escalatedTo": "support-oncall@example.com",
            "priority": "urgent",
        }
        assert by_type["com.example.ticket.escalated"]["via"] == "reply:escalate"
        assert all(d["outcome"] == "replied" for e in chain["events"] for d in e["deliveries"])

        text = rouse(
            "send", "com.example.ticket.created", "--data",
            json.dumps({**ticket, "id": "T-43", "subject": "Question about invoices", "body": "How do I download an invoice?"}),
            "--broker", running.url, "--wait",
        )  # fmt: skip
        assert text.returncode == 0, text.stderr
        assert "-> triage: replied com.example.ticket.triaged" in text.stdout
        assert '"priority": "low"' in text.stdout and "com.example.ticket.urgent" not in text.stdout
    finally:
        assert running.stop() == 0
