"""Issue 13's warm pool on real Knative: real cold starts move the floor, and no Revision rolls.

The hello example (hack/kind/example.sh) with a warm pool whose window is 30 s, the operator
evaluating every 5 s with a 10 s dwell. The skill's pods write the ledger (Redis), the parking
service exports it, the node's Prometheus scrapes it, the operator's policy decides, and the
reconciler patches min-scale onto the Revision serving the skill (resources/floor.py); Knative's
Revision reconciler copies it to the PodAutoscaler, the autoscaler keeps that many pods.

What each assertion would see on the code before issue 13 (min-scale in the Service's
template): a new Revision per floor change (the Revision names would change, the Service's
generation would grow). A min-scale set on the PodAutoscaler instead is put back by Knative's
Revision reconciler within a second or two (seen on this node: pa.min 2 -> 0), so the floor must
be on the Revision; that it stays there is checked across a restart of Knative's controller and
autoscaler (they reconcile every object when they start, as at a resync).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from rouse_testing.node import Node, PortForward, condition, script, send
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
AGENT, SKILL = "hello", "greet"
SERVICE = f"{AGENT}-{SKILL}"
MIN_SCALE = "autoscaling.knative.dev/min-scale"
PA = "podautoscalers.autoscaling.internal.knative.dev"
EVAL_INTERVAL, DWELL, WINDOW = 5, 10, "30s"
# Hourly-started schedule lasting a day: active now, whatever the time.
ALWAYS = {"cron": "0 * * * *", "duration": "24h", "min": 1}


@pytest.fixture(scope="module")
def rouse(real_node: Node) -> str:
    """The chart by deploy.sh: policies every 5 s, a short dwell so the test waits little."""
    dwell = json.dumps([{"name": "ROUSE_WARM_POOL_MIN_DWELL", "value": str(DWELL)}])
    script(
        real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE,
        "--", "--set", f"settings.evalIntervalSeconds={EVAL_INTERVAL}",
        "--set-json", f"operator.extraEnv={dwell}",
    )  # fmt: skip
    return ROUSE_NAMESPACE


@pytest.fixture(scope="module")
def hello(real_node: Node, rouse: str) -> Iterator[str]:
    """examples/hello by example.sh (its greeting asserted), then given a warm pool."""
    namespace = f"warm-{uuid.uuid4().hex[:6]}"
    script(real_node, "example.sh", "--namespace", namespace, "--agent", AGENT, "--assert")
    set_warm_pool(real_node, namespace, {"max": 1, "window": WINDOW})
    yield namespace
    real_node.delete_namespace(namespace)


def set_warm_pool(running: Node, namespace: str, pool: dict[str, Any]) -> None:
    """A JSON merge patch of spec.warmPool (a key set to None is removed)."""
    patch = json.dumps({"spec": {"warmPool": pool}})
    running.kubectl("-n", namespace, "patch", "agent", AGENT, "--type=merge", "-p", patch)


def revisions(running: Node, namespace: str) -> list[str]:
    items = running.items("revisions", namespace, f"serving.knative.dev/service={SERVICE}")
    return sorted(r["metadata"]["name"] for r in items)


def annotation(running: Node, kind: str, name: str, namespace: str) -> str | None:
    obj = running.get(kind, name, namespace) or {}
    value: str | None = (obj.get("metadata", {}).get("annotations") or {}).get(MIN_SCALE)
    return value


def floor(running: Node, namespace: str, revision: str) -> tuple[str | None, str | None]:
    """min-scale on the Revision and on its PodAutoscaler."""
    return (
        annotation(running, "revision", revision, namespace),
        annotation(running, PA, revision, namespace),
    )


def ready_pods(running: Node, namespace: str, revision: str) -> int:
    """Pods of the Revision that are Ready and not terminating."""
    pods = running.items("pods", namespace, f"serving.knative.dev/revision={revision}")
    return sum(
        1
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and condition(p, "Ready").get("status") == "True"
    )


def decided(running: Node, namespace: str) -> int | None:
    """The warm-pool policy's decision for the skill (status.warmPool)."""
    agent = running.get("agent", AGENT, namespace) or {}
    skills = ((agent.get("status") or {}).get("warmPool") or {}).get("skills") or []
    return next((s.get("minScale") for s in skills if s.get("name") == SKILL), None)


def wait_floor(running: Node, namespace: str, revision: str, value: int, timeout: float) -> None:
    wait_until(
        lambda: floor(running, namespace, revision) == (str(value), str(value)),
        timeout=timeout,
        interval=1,
        what=f"min-scale {value} on Revision {revision} and its PodAutoscaler",
    )


def wait_pods(running: Node, namespace: str, revision: str, count: int, timeout: float) -> None:
    wait_until(
        lambda: ready_pods(running, namespace, revision) == count,
        timeout=timeout,
        interval=1,
        what=f"{count} ready pod(s) of {revision}",
    )


def serving(running: Node, namespace: str) -> str | None:
    """The Service's latest ready Revision."""
    ksvc = running.get("ksvc", SERVICE, namespace) or {}
    name: str | None = (ksvc.get("status") or {}).get("latestReadyRevisionName")
    return name


def restart_knative_serving(running: Node) -> float:
    """Restart Knative's controller and autoscaler (each reconciles every object when it starts,
    as at a resync); returns when (time.time()) the new ones were asked for."""
    asked = time.time()
    for app in ("controller", "autoscaler"):
        running.kubectl("-n", "knative-serving", "delete", "pod", "-l", f"app={app}", "--wait=true")
    for app in ("controller", "autoscaler"):
        running.kubectl(
            "-n", "knative-serving", "rollout", "status", f"deployment/{app}", "--timeout=120s"
        )
    return asked


def reconciled_by_new_controller(running: Node, namespace: str, revision: str) -> bool:
    """The restarted controller logged a successful reconcile of the Revision."""
    log = running.kubectl(
        "-n", "knative-serving", "logs", "deployment/controller", check=False
    ).stdout
    key = f'"knative.dev/key":"{namespace}/{revision}"'
    return any(key in line and "Reconcile succeeded" in line for line in log.splitlines())


def test_cold_starts_raise_the_floor_and_idleness_lowers_it_without_a_rollout(
    real_node: Node, hello: str, broker: PortForward
) -> None:
    (revision,) = revisions(real_node, hello)
    before = real_node.get("ksvc", SERVICE, hello)
    assert before is not None
    generation = before["metadata"]["generation"]
    wait_pods(real_node, hello, revision, 0, timeout=180)  # scaled to zero: the next is cold
    for index in range(6):  # one cold start in 6 (+1 from example.sh) > coldStartTarget 5%
        send(broker, hello, "dev.rouse.hello", {"name": f"Warm{index}"})
    wait_until(
        lambda: decided(real_node, hello) == 1,
        timeout=90,
        interval=1,
        what="the policy raising greet's min-scale to 1 (Prometheus saw the cold start)",
    )
    wait_floor(real_node, hello, revision, 1, timeout=30)
    assert revisions(real_node, hello) == [revision], "a floor change rolled out a Revision"
    ksvc = real_node.get("ksvc", SERVICE, hello)
    assert ksvc is not None
    assert ksvc["metadata"]["generation"] == generation
    assert ksvc["spec"]["template"]["metadata"]["annotations"][MIN_SCALE] == "0"
    agent = real_node.get("agent", AGENT, hello)
    assert agent is not None
    assert agent["status"]["skills"][0]["minScale"] == 1

    # Idle for the window (and past the dwell): the policy lowers it, the pod goes.
    wait_until(
        lambda: decided(real_node, hello) == 0,
        timeout=180,
        interval=1,
        what="the policy lowering greet's min-scale to 0 after idleness",
    )
    wait_floor(real_node, hello, revision, 0, timeout=30)
    wait_pods(real_node, hello, revision, 0, timeout=180)
    assert revisions(real_node, hello) == [revision]
    print(
        f"\nwarm floor 0 -> 1 -> 0 from real cold starts: Revisions {revisions(real_node, hello)}"
    )


def test_floor_holds_pods_through_a_knative_restart_and_follows_a_rollout(
    real_node: Node, hello: str
) -> None:
    (revision,) = revisions(real_node, hello)
    wait_pods(real_node, hello, revision, 0, timeout=180)

    # A schedule asks for one warm pod: with no event at all, the pod count follows the floor.
    set_warm_pool(real_node, hello, {"max": 1, "window": WINDOW, "schedules": [ALWAYS]})
    wait_floor(real_node, hello, revision, 1, timeout=120)
    wait_pods(real_node, hello, revision, 1, timeout=120)
    assert revisions(real_node, hello) == [revision]

    # Knative's controller and autoscaler start over and reconcile everything: nothing is put back.
    restart_knative_serving(real_node)
    wait_until(
        lambda: reconciled_by_new_controller(real_node, hello, revision),
        timeout=120,
        interval=2,
        what=f"the restarted Knative controller reconciling {revision}",
    )
    assert floor(real_node, hello, revision) == ("1", "1")
    wait_pods(real_node, hello, revision, 1, timeout=60)
    assert revisions(real_node, hello) == [revision]

    # A spec change still rolls out, and the new Revision gets the floor (and its pod).
    agent = real_node.get("agent", AGENT, hello)
    assert agent is not None
    env = [*(agent["spec"].get("env") or []), {"name": "GREETING_ROLLOUT", "value": "1"}]
    real_node.kubectl(
        "-n", hello, "patch", "agent", AGENT, "--type=merge", "-p",
        json.dumps({"spec": {"env": env}}),
    )  # fmt: skip
    wait_until(
        lambda: len(revisions(real_node, hello)) == 2,
        timeout=60,
        interval=1,
        what="the spec change's Revision",
    )
    second = next(r for r in revisions(real_node, hello) if r != revision)
    wait_floor(real_node, hello, second, 1, timeout=120)
    wait_until(
        lambda: serving(real_node, hello) == second,
        timeout=180,
        interval=1,
        what=f"{second} ready and serving",
    )
    wait_pods(real_node, hello, second, 1, timeout=120)

    # The schedule removed: the floor drops (after the dwell) and the warm pod goes.
    set_warm_pool(real_node, hello, {"max": 1, "window": WINDOW, "schedules": None})
    wait_floor(real_node, hello, second, 0, timeout=180)
    wait_pods(real_node, hello, second, 0, timeout=180)
    assert revisions(real_node, hello) == sorted([revision, second])
    print(
        f"\nfloor 0 -> 1 -> 0 by schedule plus one spec change: Revisions {revisions(real_node, hello)}"
    )
