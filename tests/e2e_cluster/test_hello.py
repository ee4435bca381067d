"""Issue 11's story on the real node: the chart, the hello Agent, an event through real Knative.

`make deploy` and `make example` run the same scripts (hack/kind/deploy.sh, example.sh) that
these fixtures run, against the node's KUBECONFIG: only creating the cluster and loading images
differ from the kind path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from rouse_testing.node import (
    Node,
    PortForward,
    condition,
    event_display_log,
    scale_operator,
    script,
    send,
)
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
AGENT = "hello"
SKILL_SELECTOR = "serving.knative.dev/service=hello-greet"


@pytest.fixture(scope="module")
def rouse(real_node: Node) -> str:
    """The chart, installed by deploy.sh: operator and parking service as pods."""
    script(real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    return ROUSE_NAMESPACE


@pytest.fixture(scope="module")
def hello(real_node: Node, rouse: str) -> Iterator[str]:
    """examples/hello applied by example.sh, which asserts that the reply came back."""
    namespace = f"hello-{uuid.uuid4().hex[:6]}"
    script(real_node, "example.sh", "--namespace", namespace, "--agent", AGENT, "--assert")
    yield namespace
    real_node.delete_namespace(namespace)


def skill_pods(running: Node, namespace: str) -> list[dict[str, Any]]:
    """The hello skill's pods that are not already terminating."""
    pods = running.items("pods", namespace, SKILL_SELECTOR)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def wait_for_greeting(running: Node, namespace: str, name: str) -> None:
    """The hello skill's reply to `name`, as the event display received it from the broker."""
    wait_until(
        lambda: f"Hello, {name}!" in event_display_log(running, namespace),
        timeout=120,
        interval=1,
        what=f"the reply greeting {name} at the event display",
    )


def test_chart_runs_operator_and_parking_as_restricted_pods(real_node: Node, rouse: str) -> None:
    ns = real_node.get("namespace", rouse, "")
    assert ns is not None
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = real_node.items("pods", rouse, "app.kubernetes.io/instance=rouse")
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"operator", "parking"} <= components, components
    for pod in pods:
        assert pod["status"]["phase"] == "Running", (pod["metadata"]["name"], pod["status"])
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_agent_ready_because_its_knative_children_are(real_node: Node, hello: str) -> None:
    agent = real_node.get("agent", AGENT, hello)
    assert agent is not None
    assert agent["status"]["phase"] == "Ready"
    ksvc = real_node.get("ksvc", "hello-greet", hello)
    assert ksvc is not None
    assert condition(ksvc, "Ready")["status"] == "True"
    assert ksvc["status"]["latestReadyRevisionName"], "no Revision became ready"
    triggers = real_node.items("triggers", hello, "rouse.dev/agent=hello")
    assert triggers
    for trigger in triggers:
        assert condition(trigger, "Ready")["status"] == "True"
        assert trigger["status"]["subscriberUri"].endswith(f"hello-greet.{hello}.svc.cluster.local")


def test_event_wakes_skill_from_zero_and_reply_reaches_subscriber(
    real_node: Node, hello: str, broker: PortForward
) -> None:
    wait_until(
        lambda: not skill_pods(real_node, hello),
        timeout=240,
        interval=1,
        what="hello-greet scaled to zero",
    )
    sks = real_node.get("serverlessservice", _revision(real_node, hello), hello)
    assert sks is not None and sks["spec"]["mode"] == "Proxy", (
        "at zero the activator is in the path"
    )
    name = f"Ada-{uuid.uuid4().hex[:6]}"
    send(broker, hello, "dev.rouse.hello", {"name": name})
    wait_for_greeting(real_node, hello, name)
    assert skill_pods(real_node, hello), "the reply came, so a skill pod must have started"


def test_skill_scales_back_to_zero(real_node: Node, hello: str, broker: PortForward) -> None:
    name = f"Grace-{uuid.uuid4().hex[:6]}"
    send(broker, hello, "dev.rouse.hello", {"name": name})
    wait_for_greeting(real_node, hello, name)
    assert skill_pods(real_node, hello)
    wait_until(
        lambda: not skill_pods(real_node, hello),
        timeout=240,
        interval=1,
        what="hello-greet back at zero",
    )


def test_without_its_trigger_the_event_never_arrives(
    real_node: Node, hello: str, rouse: str, broker: PortForward
) -> None:
    # The operator puts a deleted Trigger back: stop it first, so the Trigger stays gone.
    scale_operator(real_node, rouse, 0)
    try:
        real_node.kubectl(
            "-n", hello, "delete", "triggers", "-l", "rouse.dev/agent=hello", "--wait=true"
        )
        lost = f"Lost-{uuid.uuid4().hex[:6]}"
        send(broker, hello, "dev.rouse.hello", {"name": lost})
    finally:
        scale_operator(real_node, rouse, 1)
    wait_until(
        lambda: (
            real_node.items("triggers", hello, "rouse.dev/agent=hello")
            and all(
                condition(t, "Ready")["status"] == "True"
                for t in real_node.items("triggers", hello, "rouse.dev/agent=hello")
            )
        ),
        timeout=180,
        interval=1,
        what="the operator to put the Trigger back",
    )
    found = f"Found-{uuid.uuid4().hex[:6]}"
    send(broker, hello, "dev.rouse.hello", {"name": found})
    wait_for_greeting(real_node, hello, found)
    assert f"Hello, {lost}!" not in event_display_log(real_node, hello), (
        "an event sent without a Trigger was delivered"
    )


def test_broken_skill_keeps_agent_not_ready_and_says_why(real_node: Node, hello: str) -> None:
    agent = real_node.get("agent", AGENT, hello)
    assert agent is not None
    broken = {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "broken"},
        "spec": {
            "image": agent["spec"]["image"],
            "skills": [
                {
                    "name": "greet",
                    "handler": "hello.skills:no_such_function",
                    "events": [{"type": "dev.rouse.broken"}],
                }
            ],
        },
    }
    real_node.apply([broken], hello)

    def says_why() -> str | None:
        obj = real_node.get("agent", "broken", hello)
        if obj is None or "conditions" not in obj.get("status", {}):
            return None
        ready = condition(obj, "Ready")
        if ready["status"] == "False" and "no_such_function" in ready.get("message", ""):
            return str(ready["message"])
        return None

    message = wait_until(
        says_why, timeout=300, interval=2, what="Agent broken Ready=False naming the handler"
    )
    assert real_node.get("agent", "broken", hello)["status"]["phase"] != "Ready", message


def _revision(running: Node, namespace: str) -> str:
    ksvc = running.get("ksvc", "hello-greet", namespace)
    assert ksvc is not None
    return str(ksvc["status"]["latestReadyRevisionName"])
