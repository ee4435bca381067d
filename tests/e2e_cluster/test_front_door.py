"""Issue 17's front door on the real node: the ingress routes it, and only it.

examples/support-triage by example.sh (which makes the keys Secret of its front door `ask`
and asserts the ticket chain through the broker). Through the node's public ingress listener
(kingress's `kingress` Service, port-forwarded from this machine: outside the cluster), with
the Host of each skill's route: `ask` answers, from zero pods, streaming its answer as SSE
through the activator and queue-proxy; 401 without a key; the event skills' hosts are not
routed there at all (their Services are cluster-local), while the broker still reaches them:
a ticket handed off by `ask` with ctx.emit is triaged and drafted, seen at the event display,
and the run it started is followed over SSE (`GET /runs/<run>`) to its end.

`ask`'s host is its Route's, from the Knative Service's `status.url`: under the node's public
domain (config-domain), not svc.cluster.local, which Serving keeps for cluster-local Routes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from rouse_testing.node import Node, PortForward, event_display_log, route_host, script
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
AGENT = "support-triage"


@pytest.fixture(scope="module")
def rouse(real_node: Node) -> str:
    script(real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    return ROUSE_NAMESPACE


@pytest.fixture(scope="module")
def triage(real_node: Node, rouse: str) -> Iterator[str]:
    namespace = f"front-{uuid.uuid4().hex[:6]}"
    script(real_node, "example.sh", "--namespace", namespace, "--agent", AGENT, "--assert")
    # The example's warm pool (a weekday 08:00-18:00 UTC schedule) would keep `ask` warm, and
    # "from zero" would then hang on the hour the test runs: take it off.
    patch = [{"op": "remove", "path": "/spec/warmPool"}]
    real_node.kubectl(
        "-n", namespace, "patch", "agent", AGENT, "--type=json", "-p", json.dumps(patch)
    )
    yield namespace
    real_node.delete_namespace(namespace)


@pytest.fixture(scope="module")
def ingress(real_node: Node) -> Iterator[PortForward]:
    """The public listener of the node's ingress, reached from this machine."""
    with PortForward(real_node, "knative-serving", "kingress") as forward:
        wait_until(
            lambda: httpx.get(forward.url, timeout=2).status_code > 0,
            timeout=30,
            what="the port-forward to the ingress",
        )
        yield forward


def host(running: Node, skill: str, namespace: str) -> str:
    return route_host(running, f"{AGENT}-{skill}", namespace)


def api_key(running: Node, namespace: str) -> str:
    secret = running.get("secret", f"{AGENT}-keys", namespace)
    assert secret is not None, "example.sh made no keys Secret for the front door"
    return base64.b64decode(secret["data"]["keys"]).decode().strip()


def ask_pods(running: Node, namespace: str) -> list[dict[str, Any]]:
    """`ask`'s pods, terminating ones included: "from zero" means none left at all."""
    return running.items("pods", namespace, f"serving.knative.dev/service={AGENT}-ask")


def sse(
    ingress: PortForward, ask: str, key: str, method: str, path: str, body: Any = None
) -> list[tuple[str, Any]]:
    """Every event of one SSE answer of the front door, through the public listener; a stream
    cut short fails naming what came before the cut and when."""
    headers = {"host": ask, "authorization": f"Bearer {key}"}
    got: list[tuple[str, Any]] = []
    began = time.monotonic()
    with (
        httpx.Client(timeout=120) as client,
        connect_sse(client, method, f"{ingress.url}{path}", json=body, headers=headers) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        try:
            got.extend((e.event, json.loads(e.data)) for e in source.iter_sse())
        except httpx.TransportError as exc:
            raise AssertionError(
                f"{method} {path}: the stream was cut after {time.monotonic() - began:.1f}s"
                f" ({exc!r}); events so far: {got}"
            ) from exc
    return got


def test_only_the_front_door_is_routed_through_the_ingress(
    real_node: Node, triage: str, ingress: PortForward
) -> None:
    services = real_node.items("ksvc", triage, f"rouse.dev/agent={AGENT}")
    visibility = {
        s["metadata"]["labels"]["rouse.dev/skill"]: s["metadata"]["labels"].get(
            "networking.knative.dev/visibility"
        )
        for s in services
    }
    ask = host(real_node, "ask", triage)
    assert not ask.endswith(".svc.cluster.local"), f"ask's Route is cluster-local: {ask}"
    domain = ask.removeprefix(f"{AGENT}-ask.{triage}.")
    assert visibility == {
        "ask": None,
        "triage": "cluster-local",
        "draft": "cluster-local",
        "escalate": "cluster-local",
        "refund": "cluster-local",
        "digest": "cluster-local",
    }
    for skill in ("triage", "draft", "escalate", "refund", "digest"):
        # neither its cluster-local host nor the public one it would have had
        assert host(real_node, skill, triage).endswith(f"{triage}.svc.cluster.local")
        for name in (host(real_node, skill, triage), f"{AGENT}-{skill}.{triage}.{domain}"):
            response = httpx.post(ingress.url, headers={"host": name}, json={}, timeout=30)
            assert response.status_code == 404, (name, response.status_code, response.text)
    refused = httpx.post(ingress.url, headers={"host": ask}, json={"question": "?"}, timeout=120)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"


def test_the_front_door_streams_from_zero_and_hands_off_to_the_broker(
    real_node: Node, triage: str, ingress: PortForward
) -> None:
    key = api_key(real_node, triage)
    ask = host(real_node, "ask", triage)
    wait_until(
        lambda: not ask_pods(real_node, triage), timeout=180, interval=2, what="ask scaled to zero"
    )
    question = {"question": "Where can I download my invoice?", "customer": "Ada"}
    got = sse(ingress, ask, key, "POST", "/", question)
    chunks = [c for name, c in got if name == "chunk"]
    assert got[0][0] == "run" and len(chunks) >= 3 and got[-1][0] == "done"
    assert "".join(c["text"] for c in chunks).startswith("Invoices are under Settings")
    # the hand-off: the ticket reaches triage (cluster-local) through the broker
    ticket_question = {"question": "Please open a ticket: my invoice is wrong", "customer": "Ada"}
    handed = sse(ingress, ask, key, "POST", "/", ticket_question)
    (_, opening), (_, chunk), (last, _) = handed
    assert chunk["handedOff"] == "triage" and last == "done", handed
    ticket = chunk["ticket"]
    # the run it started, followed through the ingress at once, as the answer says, to its end
    # (the run history in the state store)
    assert opening["follow"] == f"/runs/{opening['run']}"
    steps = sse(ingress, ask, key, "GET", opening["follow"])
    assert steps[-1] == ("end", {"run": opening["run"], "state": "done", "steps": len(steps) - 1})
    delivered = [(d["skill"], d["outcome"]) for name, d in steps if name == "delivery"]
    assert delivered == [("ask", "ok"), ("triage", "ok"), ("draft", "ok")], steps
    # created (data.id), triaged (data.ticket.id) and drafted (data.ticketId) each name it
    wait_until(
        lambda: event_display_log(real_node, triage).count(ticket) >= 3,
        timeout=120,
        interval=2,
        what=f"ticket {ticket} created, triaged and drafted at the event display",
    )
