"""Issue 13's story on the real node: examples/support-triage as a user installs and runs it.

The chart by hack/kind/deploy.sh, the example by hack/kind/example.sh (`kubectl apply -f` of
examples/support-triage/agent.yaml into a restricted namespace with a Broker and an event
display: a Trigger without a filter, the broker's second subscriber, where every event is
counted). The image is the example's Dockerfile built by hack/node/images.sh. The test changes
only what a story of minutes needs: the digest's `*/5` schedule becomes every minute, the warm
pool (its office-hours schedule would keep pods up: warm13's part) is removed, and the skills get a
model (tests/rouse_testing/openai_server.py as a pod, the only fake) so that a provider outage can
be staged. Its answer is not the JSON triage asks for, so triage keeps its keyword rules and the
chain is the one `rouse dev` shows.

Each test names what it counts at the display, in the skills' logs and at the parking service
(Knative's dead-letter sink); dead letters are inspected and replayed with `rouse deadletters
--cluster`, the user's command, through a port-forward with the chart's token.

What would make them fail (reasoned from the code paths, not each staged on the node): waiting
records kept in the pod (a SQLite file instead of the chart's Redis) leave nothing for the new
pod, which answers the approval as an ordinary event: no refund.issued; a suspension that held
its request open keeps the refund pod up: never at zero; a Trigger without the skill's delivery
spec tries once, not three times, and without its dead-letter sink nothing reaches the parking
service; a replay sent into the broker instead of to the skill shows `created` twice at the
display; a second resume shows a second refund.issued; a PingSource sinking straight into the
digest skill (as before) drops the skill's reply: no digest.ready at the display (seen on the node).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from rouse_runtime.agentspec import PING_TYPE
from rouse_runtime.events import derived_id
from rouse_testing.model_pod import MODEL_DEPLOYMENT, model_manifests, model_url
from rouse_testing.node import (
    Node,
    PortForward,
    condition,
    display_events,
    parking_token,
    script,
    send,
    skills_serve_with,
)
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
AGENT = "support-triage"
FAST_CRON = "* * * * *"  # PingSource's finest schedule
MODEL_REPLY = "Thank you for writing to us; we are on it."  # not JSON: triage keeps its rules
CREATED, TRIAGED, DRAFTED = (
    "com.example.ticket.created",
    "com.example.ticket.triaged",
    "com.example.reply.drafted",
)
URGENT, ESCALATED = "com.example.ticket.urgent", "com.example.ticket.escalated"
DIGEST_READY = "com.example.digest.ready"
REFUND_REQUESTED, REFUND_APPROVED, REFUND_ISSUED = (
    "com.example.refund.requested",
    "com.example.refund.approved",
    "com.example.refund.issued",
)
RUN = uuid.uuid4().hex[:4]
MARKS: dict[str, float] = {}  # when each stage of the story began (time.monotonic())


@pytest.fixture(scope="module")
def rouse(real_node: Node) -> str:
    MARKS["chart"] = time.monotonic()
    script(real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    return ROUSE_NAMESPACE


@pytest.fixture(scope="module")
def story(real_node: Node, rouse: str) -> Iterator[str]:
    """The example installed by example.sh (which asserts its own urgent ticket's chain), then
    the test's changes: a schedule every minute, no warm pool, a model."""
    namespace = f"story-{RUN}"
    MARKS["example"] = time.monotonic()
    script(real_node, "example.sh", "--namespace", namespace, "--agent", AGENT, "--assert")
    real_node.apply(model_manifests(10, 5, MODEL_REPLY), namespace)
    real_node.kubectl("-n", namespace, "rollout", "status", MODEL_DEPLOYMENT, "--timeout=120s")
    agent = real_node.get("agent", AGENT, namespace)
    assert agent is not None
    digest = [s["name"] for s in agent["spec"]["skills"]].index("digest")
    patch = [
        {"op": "replace", "path": f"/spec/skills/{digest}/schedule/cron", "value": FAST_CRON},
        {"op": "remove", "path": "/spec/warmPool"},
        {"op": "add", "path": "/spec/env/-", "value": {"name": "ROUSE_LLM_BASE_URL", "value": model_url(namespace)}},
        {"op": "add", "path": "/spec/env/-", "value": {"name": "ROUSE_LLM_MODEL", "value": "gpt-4o-mini"}},
    ]  # fmt: skip
    real_node.kubectl(
        "-n", namespace, "patch", "agent", AGENT, "--type=json", "-p", json.dumps(patch)
    )
    wait_until(
        lambda: skills_serve_with(real_node, namespace, AGENT, "ROUSE_LLM_MODEL"),
        timeout=300,
        interval=2,
        what="every skill's latest Revision (with the model settings) Ready",
    )
    MARKS["tickets"] = time.monotonic()
    yield namespace
    real_node.delete_namespace(namespace)


# -- what the display, the skills and the parking service saw ---------------------------------


def ticket_of(event: dict[str, Any]) -> str | None:
    """The ticket an event of the story is about (each type names it its own way)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    found = data.get("ticketId") or (data.get("ticket") or {}).get("id")
    if found is None and event.get("type") == CREATED:
        found = data.get("id")
    return str(found) if found else None


def at_display(running: Node, namespace: str, ticket: str) -> Counter[str]:
    """How many events of each type about `ticket` the display received."""
    return Counter(
        str(e.get("type")) for e in display_events(running, namespace) if ticket_of(e) == ticket
    )


def wait_display(running: Node, namespace: str, ticket: str, *types: str) -> Counter[str]:
    def arrived() -> Counter[str] | None:
        seen = at_display(running, namespace, ticket)
        return seen if all(seen[t] for t in types) else None

    found: Counter[str] = wait_until(
        arrived,
        timeout=180,
        interval=2,
        what=f"{', '.join(types)} of ticket {ticket} at the event display",
    )
    return found


def skill_pods(running: Node, namespace: str, skill: str, terminating: bool = False) -> list[str]:
    """Names of the skill's pods (those terminating only when asked)."""
    pods = running.items("pods", namespace, f"serving.knative.dev/service={AGENT}-{skill}")
    return [
        p["metadata"]["name"]
        for p in pods
        if terminating or not p["metadata"].get("deletionTimestamp")
    ]


def skill_log(running: Node, namespace: str, skill: str) -> dict[str, list[dict[str, Any]]]:
    """The JSON log lines of each pod of the skill (the runtime's and the skill's own), the
    terminating ones too while they last."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for pod in skill_pods(running, namespace, skill, terminating=True):
        out = running.kubectl("-n", namespace, "logs", pod, "-c", "skill", check=False).stdout
        lines[pod] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines


def logged(
    running: Node, namespace: str, skill: str, msg: str, **fields: Any
) -> list[tuple[str, dict[str, Any]]]:
    """(pod, line) of the skill's log lines saying `msg` with these fields."""
    return [
        (pod, line)
        for pod, lines in skill_log(running, namespace, skill).items()
        for line in lines
        if line.get("msg") == msg and all(line.get(k) == v for k, v in fields.items())
    ]  # fmt: skip


def rouse_cli(
    *args: str, parking: PortForward, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The user's `rouse` command against the cluster's parking service."""
    env = {**os.environ, "ROUSE_PARKING_URL": parking.url}
    env.pop("ROUSE_PARKING_TOKEN", None)
    if token is not None:
        env["ROUSE_PARKING_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "rouse_runtime.cli", *args],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip


def dead_letters(parking: PortForward, namespace: str) -> list[dict[str, Any]]:
    """`rouse deadletters list --cluster --json` for the story's namespace."""
    listed = rouse_cli(
        "deadletters", "list", "--cluster", "--namespace", namespace, "--json", parking=parking
    )
    assert listed.returncode == 0, listed.stderr
    letters: list[dict[str, Any]] = json.loads(listed.stdout)
    return letters


def letter_of(parking: PortForward, namespace: str, event_id: str) -> dict[str, Any] | None:
    return next((d for d in dead_letters(parking, namespace) if d["eventId"] == event_id), None)


# -- the story --------------------------------------------------------------------------------


def test_tickets_walk_triage_draft_escalate_through_the_broker(
    real_node: Node, story: str, broker: PortForward
) -> None:
    urgent = {"id": f"U-{RUN}", "customer": "Ada", "subject": "Site down",
              "body": "Checkout returns 500 for everyone"}  # fmt: skip
    normal = {"id": f"N-{RUN}", "customer": "Lin", "subject": "Question about invoices",
              "body": "How do I download an invoice?"}  # fmt: skip
    for ticket in (urgent, normal):
        send(broker, story, CREATED, ticket, event_id=f"{ticket['id']}-created")
    chain = (CREATED, TRIAGED, DRAFTED, URGENT, ESCALATED)
    seen_urgent = wait_display(real_node, story, urgent["id"], *chain)
    seen_normal = wait_display(real_node, story, normal["id"], CREATED, TRIAGED, DRAFTED)
    assert seen_urgent == dict.fromkeys(chain, 1), seen_urgent
    assert seen_normal == dict.fromkeys((CREATED, TRIAGED, DRAFTED), 1), seen_normal
    events = {
        (ticket_of(e), e["type"]): e for e in display_events(real_node, story) if ticket_of(e)
    }
    # Reply chaining: each reply comes from the skill that answered; fan-out: urgent was emitted.
    for event_type, skill in (
        (TRIAGED, "triage"),
        (DRAFTED, "draft"),
        (URGENT, "draft"),
        (ESCALATED, "escalate"),
    ):
        assert events[(urgent["id"], event_type)]["source"] == f"/agents/{AGENT}/{skill}"
    assert events[(urgent["id"], TRIAGED)]["data"]["priority"] == "urgent"
    assert events[(normal["id"], TRIAGED)]["data"]["priority"] == "low"
    assert events[(urgent["id"], DRAFTED)]["data"]["method"] == "model"
    print(f"\nchain: urgent {dict(seen_urgent)}, low {dict(seen_normal)}")
    print(real_node.kubectl("-n", story, "get", "agent", AGENT).stdout)
    print(
        real_node.kubectl(
            "-n", story, "get", "ksvc,pingsource", "-l", f"rouse.dev/agent={AGENT}"
        ).stdout
    )


def test_the_schedule_fires_through_a_real_pingsource_and_its_reply_reaches_the_broker(
    real_node: Node, story: str
) -> None:
    name = f"{AGENT}-digest-cron"
    ping = real_node.get("pingsource", name, story)
    assert ping is not None
    assert ping["spec"]["schedule"] == FAST_CRON
    assert condition(ping, "Ready")["status"] == "True"
    # The PingSource ticks into the broker; the Trigger of its ticks brings them to digest.
    assert ping["spec"]["sink"]["ref"] == {
        "apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"
    }  # fmt: skip
    ticks_trigger = real_node.get("trigger", name, story)
    assert ticks_trigger is not None and condition(ticks_trigger, "Ready")["status"] == "True"
    source = f"/apis/v1/namespaces/{story}/pingsources/{name}"
    ticks = wait_until(
        lambda: logged(real_node, story, "digest", "digest", event_source=source),
        timeout=150,
        interval=1,
        what=f"a tick of {name} at the digest skill",
    )
    pod, line = ticks[0]
    assert line["window"] == "5m", line  # the schedule's data, as the PingSource sent it
    # Its reply (the id derives from the tick's) reaches the display, a second subscriber of the
    # broker: a PingSource sinking into the skill drops what the skill answers.
    reply_id = derived_id(AGENT, "digest", source, line["event_id"], "reply")
    reply = wait_until(
        lambda: next((e for e in display_events(real_node, story) if e.get("id") == reply_id), None),
        timeout=60,
        interval=2,
        what=f"digest's reply to tick {line['event_id']} at the event display",
    )  # fmt: skip
    assert (reply["type"], reply["source"]) == (DIGEST_READY, f"/agents/{AGENT}/digest"), reply
    assert reply["data"]["window"] == "5m", reply
    at_display = [e for e in display_events(real_node, story) if e.get("id") == line["event_id"]]
    assert [(e["type"], e["source"]) for e in at_display] == [(PING_TYPE, source)]  # the tick, once
    print(
        f"\ndigest tick in pod {pod}: {line['tickets']} ticket(s) since the last digest; its "
        f"reply {DIGEST_READY} at the display: {reply['data']}"
    )


def test_an_approval_resumes_the_suspended_refund_once_in_a_new_pod(
    real_node: Node, story: str, broker: PortForward
) -> None:
    ticket = {"id": f"R-{RUN}", "customer": "Grace", "subject": "Charged twice",
              "body": "I was charged twice for March, please refund the second charge"}  # fmt: skip
    send(broker, story, CREATED, ticket, event_id=f"{ticket['id']}-created")
    wait_display(real_node, story, ticket["id"], REFUND_REQUESTED)
    suspended = wait_until(
        lambda: logged(real_node, story, "refund", "suspended", wait_key=ticket["id"]),
        timeout=60,
        interval=1,
        what="the refund skill suspended on the ticket",
    )
    pods_before = set(skill_pods(real_node, story, "refund", terminating=True))
    assert pods_before >= {pod for pod, _ in suspended}

    # Waiting holds no pod: the skill scales to zero while nobody has approved yet.
    def at_zero() -> bool:
        pods_before.update(skill_pods(real_node, story, "refund", terminating=True))
        return not skill_pods(real_node, story, "refund")

    wait_until(at_zero, timeout=240, interval=1, what="the waiting refund skill at zero pods")
    assert at_display(real_node, story, ticket["id"])[REFUND_ISSUED] == 0

    approval = {"by": "lead@example.com"}
    approved = time.monotonic()
    send(broker, story, REFUND_APPROVED, approval, event_id=f"approve-{ticket['id']}-1",
         extensions={"rousekey": ticket["id"]})  # fmt: skip
    wait_display(real_node, story, ticket["id"], REFUND_ISSUED)
    answered = time.monotonic() - approved
    resumed = wait_until(
        lambda: logged(real_node, story, "refund", "resumed", wait_key=ticket["id"]),
        timeout=60,
        interval=1,
        what="the refund skill's resumed line",
    )
    assert len(resumed) == 1, resumed
    new_pod = resumed[0][0]
    assert new_pod not in pods_before, f"resumed in {new_pod}, a pod from before: {pods_before}"

    # A second approval (another person, another event) finds nothing waiting: no second refund.
    send(broker, story, REFUND_APPROVED, {"by": "second@example.com"},
         event_id=f"approve-{ticket['id']}-2", extensions={"rousekey": ticket["id"]})  # fmt: skip
    wait_until(
        lambda: logged(real_node, story, "refund", "no refund awaits this approval", rousekey=ticket["id"]),
        timeout=120,
        interval=1,
        what="the second approval answered as an ordinary event",
    )  # fmt: skip
    seen = at_display(real_node, story, ticket["id"])
    assert seen[REFUND_ISSUED] == 1, seen
    assert len(logged(real_node, story, "refund", "resumed", wait_key=ticket["id"])) == 1
    issued = next(
        e["data"] for e in display_events(real_node, story)
        if e["type"] == REFUND_ISSUED and ticket_of(e) == ticket["id"]
    )  # fmt: skip
    assert issued["approvedBy"] == approval["by"]
    print(
        f"\napproval: suspended in {sorted(pods_before)}, the skill at zero pods; the approval "
        f"resumed it once in the new pod {new_pod}, refund.issued at the display "
        f"{answered:.1f} s after it was sent (waited {issued['waitedSeconds']} s); "
        f"display {dict(seen)}"
    )


def test_a_bad_ticket_is_retried_with_backoff_then_dead_lettered(
    real_node: Node, story: str, broker: PortForward, parking: PortForward
) -> None:
    bad = {"id": f"B-{RUN}", "customer": "Bob"}  # no subject, no body: triage raises
    event_id = send(broker, story, CREATED, bad, event_id=f"{bad['id']}-created")
    letter = wait_until(
        lambda: letter_of(parking, story, event_id),
        timeout=120,
        interval=2,
        what="the bad ticket in Knative's dead-letter sink (rouse parked list)",
    )
    assert letter["skill"] == "triage", letter
    event = letter["event"]
    assert event["knativeerrorcode"] == "500", event
    answer = json.loads(base64.b64decode(event["knativeerrordata"]))
    assert answer["detail"] == "BadTicketError: ticket is missing subject, body", answer
    assert letter["reason"] == (
        "HTTP 500: skill failed: BadTicketError: ticket is missing subject, body"
    ), letter
    # The triage delivery spec: retries 2, exponential from PT1S: three attempts, spaced apart.
    attempts = sorted(
        datetime.fromisoformat(line["time"])
        for _, line in logged(real_node, story, "triage", "skill failed", event_id=event_id)
    )
    assert len(attempts) == 3, attempts
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 1.0 for gap in gaps), gaps
    assert at_display(real_node, story, bad["id"]) == {CREATED: 1}

    # Replayed by hand it fails again: the command says so and the letter stays.
    token = parking_token(real_node, ROUSE_NAMESPACE)
    replay = rouse_cli(
        "deadletters", "replay", str(letter["id"]), "--cluster", parking=parking, token=token
    )
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert "not delivered, kept" in replay.stderr and "500" in replay.stderr, replay.stderr
    listed = rouse_cli("deadletters", "list", "--cluster", "--namespace", story, parking=parking)
    assert f"id={event_id}" in listed.stdout, listed.stdout
    dropped = rouse_cli(
        "parked", "drop", story, AGENT, "--kind", "dead-letter", "--id", str(letter["id"]),
        parking=parking, token=token,
    )  # fmt: skip
    assert dropped.returncode == 0 and dropped.stdout.strip() == "dropped 1 event(s)", dropped
    print(f"\nbad ticket: {len(attempts)} attempts, gaps {[round(g, 2) for g in gaps]} s")
    print(f"{listed.stdout}{replay.stderr}{dropped.stdout}")


def test_dead_letters_of_a_model_outage_are_replayed_when_it_is_back(
    real_node: Node, story: str, broker: PortForward, parking: PortForward
) -> None:
    real_node.kubectl("-n", story, "scale", MODEL_DEPLOYMENT, "--replicas=0")
    wait_until(
        lambda: not real_node.items("pods", story, "app=model"),
        timeout=120,
        interval=1,
        what="the model provider down",
    )
    ticket = {"id": f"O-{RUN}", "customer": "Kim", "subject": "Export fails",
              "body": "The CSV export shows an error page."}  # fmt: skip
    event_id = send(broker, story, CREATED, ticket, event_id=f"{ticket['id']}-created")
    letter = wait_until(
        lambda: letter_of(parking, story, event_id),
        timeout=120,
        interval=2,
        what="the ticket dead-lettered while the model is down",
    )
    assert at_display(real_node, story, ticket["id"]) == {CREATED: 1}

    real_node.kubectl("-n", story, "scale", MODEL_DEPLOYMENT, "--replicas=1")
    # Not `rollout status`: after a scale from 0 it can answer before the new pod is Ready (seen
    # on the node: the replay then met the model still down, failed, and kept the letter).
    wait_until(
        lambda: any(
            condition(pod, "Ready")["status"] == "True"
            for pod in real_node.items("pods", story, "app=model")
            if not pod["metadata"].get("deletionTimestamp") and pod["status"].get("conditions")
        ),
        timeout=120,
        interval=1,
        what="the model provider back (a Ready pod)",
    )
    token = parking_token(real_node, ROUSE_NAMESPACE)

    def replayed() -> subprocess.CompletedProcess[str] | None:
        """A replay that still meets the model down (endpoints catching up) keeps the letter:
        the user runs it again."""
        done = rouse_cli(
            "deadletters", "replay", str(letter["id"]), "--cluster", parking=parking, token=token
        )
        assert done.returncode == 0 or "not delivered, kept" in done.stderr, done.stderr
        return done if done.returncode == 0 else None

    replay = wait_until(replayed, timeout=60, interval=2, what="the dead letter replayed")
    assert replay.stdout.startswith(f"replayed dead letter {letter['id']} "), replay.stdout
    seen = wait_display(real_node, story, ticket["id"], TRIAGED, DRAFTED)
    assert seen == {CREATED: 1, TRIAGED: 1, DRAFTED: 1}, seen
    assert letter_of(parking, story, event_id) is None
    print(f"\nmodel outage: dead-lettered, replayed once; display {dict(seen)}\n{replay.stdout}")


def test_every_skill_scales_back_to_zero(real_node: Node, story: str) -> None:
    # The example's own schedule again: a tick a minute would wake digest every minute.
    agent = real_node.get("agent", AGENT, story)
    assert agent is not None
    digest = [s["name"] for s in agent["spec"]["skills"]].index("digest")
    patch = [
        {"op": "replace", "path": f"/spec/skills/{digest}/schedule/cron", "value": "*/5 * * * *"}
    ]
    real_node.kubectl("-n", story, "patch", "agent", AGENT, "--type=json", "-p", json.dumps(patch))
    wait_until(
        lambda: not real_node.items("pods", story, f"rouse.dev/agent={AGENT}"),
        timeout=300,
        interval=2,
        what="every skill of the story at zero pods",
    )
    scheduled = Counter(
        e["involvedObject"]["name"].split("-deployment-")[0].removeprefix(f"{AGENT}-")
        for e in real_node.items("events", story)
        if e["reason"] == "Scheduled" and e["involvedObject"]["name"].startswith(f"{AGENT}-")
    )
    every = Counter(
        str(e.get("type")) for e in display_events(real_node, story)
    )  # fmt: skip
    print(
        f"\nstory on the node: {time.monotonic() - MARKS['chart']:.0f} s from chart install to all "
        f"skills at zero (chart {MARKS['example'] - MARKS['chart']:.0f} s, example.sh and the "
        f"model settings rolled out {MARKS['tickets'] - MARKS['example']:.0f} s, tickets to zero "
        f"{time.monotonic() - MARKS['tickets']:.0f} s); pods scheduled per skill (revisions included) {dict(sorted(scheduled.items()))}; "
        f"events at the display by type {dict(sorted(every.items()))}"
    )
