"""Issue 13: the operator as pods from its image, two replicas with the leader Lease; the leader
killed (`kubectl delete pod --grace-period=0 --force`: no clean stop, no Lease release) while it
is creating an Agent's children. The follower takes the Lease once it expires and finishes the
job: every child exists once, owned by the Agent, none extra, and each Service made exactly one
Revision (no second rollout from a re-apply that differs).

Knative is told to start no pod for a new Revision (initial-scale 0), so sixteen skills cost
sixteen Services, not sixteen pods on a 2-core node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rouse_testing.node import Node, condition, script
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
AGENT = "many"
SKILLS = 16
LEASE = "rouse-operator"
CHILDREN = {"ksvc": SKILLS, "triggers": SKILLS}  # one event per skill, no schedule


@pytest.fixture(scope="module")
def rouse(real_node: Node) -> Iterator[str]:
    """The chart with two operator replicas (leader election is the chart's default)."""
    real_node.kubectl(
        "-n", "knative-serving", "patch", "configmap", "config-autoscaler", "--type=merge",
        "-p", json.dumps({"data": {"allow-zero-initial-scale": "true", "initial-scale": "0"}}),
    )  # fmt: skip
    script(
        real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE,
        "--", "--set", "operator.replicas=2",
    )  # fmt: skip
    real_node.kubectl(
        "-n", ROUSE_NAMESPACE, "rollout", "status", "deployment/rouse-operator", "--timeout=180s"
    )
    yield ROUSE_NAMESPACE
    real_node.kubectl(
        "-n", "knative-serving", "patch", "configmap", "config-autoscaler", "--type=merge",
        "-p", json.dumps({"data": {"allow-zero-initial-scale": "false", "initial-scale": "1"}}),
    )  # fmt: skip


def agent(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": AGENT},
        "spec": {
            "image": image,
            "skills": [
                {
                    "name": f"s{index}",
                    "handler": "hello.skills:greet",
                    "events": [{"type": f"dev.rouse.many.{index}"}],
                }
                for index in range(SKILLS)
            ],
        },
    }


def leader(running: Node, namespace: str) -> str:
    """The operator pod holding the Lease (holderIdentity is <pod>_<pid>)."""
    lease = running.get("lease", LEASE, namespace)
    assert lease is not None, "no leader Lease"
    holder: str = lease["spec"]["holderIdentity"]
    return holder.rsplit("_", 1)[0]


def children(running: Node, namespace: str) -> dict[str, list[dict[str, Any]]]:
    return {kind: running.items(kind, namespace, f"rouse.dev/agent={AGENT}") for kind in CHILDREN}


def test_leader_killed_mid_reconcile_leaves_no_orphan_and_no_duplicate(
    real_node: Node, rouse: str
) -> None:
    first = leader(real_node, rouse)
    namespace = real_node.create_namespace("failover")
    real_node.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default"}}
    ))  # fmt: skip
    real_node.apply([agent("ghcr.io/rouse-dev/examples-hello:0.1.0")], namespace)

    # Kill the leader as soon as it has made some children but not all of them.
    made: dict[str, list[dict[str, Any]]] = {}

    def started() -> bool:
        made.update(children(real_node, namespace))
        return sum(len(v) for v in made.values()) > 0

    wait_until(started, timeout=60, interval=0.05, what="the leader's first child")
    real_node.kubectl(
        "-n", rouse, "delete", "pod", first, "--grace-period=0", "--force", "--wait=false"
    )
    killed_at = time.monotonic()
    so_far = sum(len(v) for v in made.values())
    print(f"\nleader {first} killed after {so_far} of {sum(CHILDREN.values())} children")
    assert so_far < sum(CHILDREN.values()), "the reconcile had finished: not a mid-reconcile kill"

    wait_until(
        lambda: leader(real_node, rouse) != first,
        timeout=60,
        interval=0.5,
        what="another operator pod taking the Lease",
    )
    print(f"Lease taken by {leader(real_node, rouse)} after {time.monotonic() - killed_at:.1f}s")
    wait_until(
        lambda: all(len(v) == CHILDREN[k] for k, v in children(real_node, namespace).items()),
        timeout=120,
        interval=1,
        what="every child",
    )

    def ready() -> bool:
        obj = real_node.get("agent", AGENT, namespace) or {}
        return condition(obj, "SkillsReady").get("status") == "True"

    wait_until(ready, timeout=300, interval=2, what="every skill's Service Ready")
    obj = real_node.get("agent", AGENT, namespace)
    assert obj is not None
    uid = obj["metadata"]["uid"]
    final = children(real_node, namespace)
    for kind, items in final.items():
        names = [i["metadata"]["name"] for i in items]
        assert len(names) == len(set(names)) == CHILDREN[kind], (kind, names)
        for item in items:
            owners = item["metadata"].get("ownerReferences") or []
            assert [(o["uid"], o.get("controller")) for o in owners] == [(uid, True)], item[
                "metadata"
            ]
    revisions = real_node.items("revisions", namespace)
    per_service: dict[str, int] = {}
    for revision in revisions:
        service = revision["metadata"]["labels"]["serving.knative.dev/service"]
        per_service[service] = per_service.get(service, 0) + 1
    assert per_service == {f"{AGENT}-s{i}": 1 for i in range(SKILLS)}, per_service
    real_node.delete_namespace(namespace)
