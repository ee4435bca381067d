"""Issue 17's front door on the real node: the ingress routes it, and only it.

examples/support-triage by example.sh (which makes the keys Secret of its front door `ask`
and asserts the ticket chain through the broker). Through the node's public ingress listener
(kingress's `kingress` Service, port-forwarded from this machine: outside the cluster), with
the Host of each skill's route: `ask` answers, from zero pods, streaming its answer as SSE
through the activator and queue-proxy; 401 without a key; the event skills' hosts are not
routed there at all (their Services are cluster-local), while the broker still reaches them:
a ticket handed off by `ask` with ctx.emit is triaged and drafted, seen at the event display.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from rouse_testing.node import Node, PortForward, event_display_log, script
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


def host(skill: str, namespace: str) -> str:
    return f"{AGENT}-{skill}.{namespace}.svc.cluster.local"


def api_key(running: Node, namespace: str) -> str:
    secret = running.get("secret", f"{AGENT}-keys", namespace)
    assert secret is not None, "example.sh made no keys Secret for the front door"
    return base64.b64decode(secret["data"]["keys"]).decode().strip()


def ask_pods(running: Node, namespace: str) -> list[dict[str, Any]]:
    pods = running.items("pods", namespace, f"serving.knative.dev/service={AGENT}-ask")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def stream(ingress: PortForward, namespace: str, key: str, question: str) -> list[tuple[str, Any]]:
    headers = {"host": host("ask", namespace), "authorization": f"Bearer {key}"}
    with (
        httpx.Client(timeout=120) as client,
        connect_sse(
            client,
            "POST",
            ingress.url,
            json={"question": question, "customer": "Ada"},
            headers=headers,
        ) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        return [(e.event, json.loads(e.data)) for e in source.iter_sse()]


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
    assert visibility == {
        "ask": None,
        "triage": "cluster-local",
        "draft": "cluster-local",
        "escalate": "cluster-local",
        "refund": "cluster-local",
        "digest": "cluster-local",
    }
    for skill in ("triage", "draft", "escalate", "refund", "digest"):
        response = httpx.post(
            ingress.url, headers={"host": host(skill, triage)}, json={}, timeout=30
        )
        assert response.status_code == 404, (skill, response.status_code, response.text)
    refused = httpx.post(
        ingress.url, headers={"host": host("ask", triage)}, json={"question": "?"}, timeout=120
    )
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"


def test_the_front_door_streams_from_zero_and_hands_off_to_the_broker(
    real_node: Node, triage: str, ingress: PortForward
) -> None:
    key = api_key(real_node, triage)
    wait_until(
        lambda: not ask_pods(real_node, triage), timeout=180, interval=2, what="ask scaled to zero"
    )
    got = stream(ingress, triage, key, "Where can I download my invoice?")
    chunks = [c for name, c in got if name == "chunk"]
    assert got[0][0] == "run" and len(chunks) >= 3 and got[-1][0] == "done"
    assert "".join(c["text"] for c in chunks).startswith("Invoices are under Settings")
    # the hand-off: the ticket reaches triage (cluster-local) through the broker
    handed = stream(ingress, triage, key, "Please open a ticket: my invoice is wrong")
    ticket = next(c for name, c in handed if name == "chunk")["ticket"]
    # created (data.id), triaged (data.ticket.id) and drafted (data.ticketId) each name it
    wait_until(
        lambda: event_display_log(real_node, triage).count(ticket) >= 3,
        timeout=120,
        interval=2,
        what=f"ticket {ticket} created, triaged and drafted at the event display",
    )


BARE = """
import os, uvicorn
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.routing import Route

async def chunks():
    for i in range(3):
        yield {"event": "chunk", "data": f'"chunk {i}"'}

async def ask(request):
    await request.body()
    return EventSourceResponse(chunks())

uvicorn.run(Starlette(routes=[Route("/", ask, methods=["POST"])]), host="0.0.0.0",
            port=int(os.environ["PORT"]), log_config=None, access_log=False)
"""


def first_chunk(url: str, headers: dict[str, str], body: Any) -> float:
    """Seconds from the request to the stream's first `chunk` event."""
    began = time.perf_counter()
    with (
        httpx.Client(timeout=180) as client,
        client.stream("POST", url, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("event: chunk"):
                return time.perf_counter() - began
    raise AssertionError(f"{headers['host']}: the stream ended without a chunk")


def test_first_chunk_cold_and_warm_against_a_bare_knative_service(
    real_node: Node, triage: str, ingress: PortForward
) -> None:
    """bench/front_door.py's comparison on real Knative (printed, not asserted): the front door
    against a bare Starlette + sse-starlette Knative Service from the same image, each from
    zero pods through the activator, then warm."""
    ask = real_node.get("ksvc", f"{AGENT}-ask", triage)
    assert ask is not None
    container = ask["spec"]["template"]["spec"]["containers"][0]
    bare = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "bare"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": container["image"],
                            "command": ["python", "-c", BARE],
                            "securityContext": container["securityContext"],
                        }
                    ]
                }
            }
        },
    }
    real_node.apply([bare], triage)
    real_node.kubectl("-n", triage, "wait", "--for=condition=Ready", "ksvc/bare", "--timeout=180s")
    key = api_key(real_node, triage)
    targets = {
        "front door": ({"host": host("ask", triage), "authorization": f"Bearer {key}"},
                       {"question": "Where can I download my invoice?"}),
        "bare": ({"host": f"bare.{triage}.svc.cluster.local"}, {}),
    }  # fmt: skip
    for service in (f"{AGENT}-ask", "bare"):
        wait_until(
            lambda service=service: (
                not [
                    p
                    for p in real_node.items(
                        "pods", triage, f"serving.knative.dev/service={service}"
                    )
                    if not p["metadata"].get("deletionTimestamp")
                ]
            ),
            timeout=180,
            interval=2,
            what=f"{service} scaled to zero",
        )
    figures = {}
    for name, (headers, body) in targets.items():
        cold = first_chunk(ingress.url, headers, body)
        warm = statistics.median(first_chunk(ingress.url, headers, body) for _ in range(10))
        figures[name] = (cold, warm)
    (fc, fw), (bc, bw) = figures["front door"], figures["bare"]
    print(
        f"\nfirst chunk on the real node: cold {fc * 1000:.0f} vs {bc * 1000:.0f} ms"
        f" (ratio {fc / bc:.2f}), warm {fw * 1000:.1f} vs {bw * 1000:.1f} ms (ratio {fw / bw:.2f})"
    )
