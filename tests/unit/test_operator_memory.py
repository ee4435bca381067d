"""What the operator keeps per Agent stays small (issue 14: memory grew with every Agent)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kubernetes import client
from rouse_operator import handlers, reconcile
from rouse_operator.kube import Kube
from rouse_operator.resources.meta import CHILD_KINDS
from rouse_operator.settings import Settings


def agent_body(name: str) -> dict[str, object]:
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {
            "name": name, "namespace": "ns", "uid": "u1", "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:image": {}}}}],
        },
        "spec": {"image": "i:1", "skills": [{"name": "s", "handler": "m:f"}]},
        "status": {"phase": "Pending"},
    }  # fmt: skip


@pytest.fixture
def fresh_state() -> Iterator[None]:
    saved = handlers.STATE
    handlers.STATE = handlers._State()
    yield
    handlers.STATE = saved


@pytest.mark.usefixtures("fresh_state")
async def test_the_policy_loop_keeps_each_agent_without_its_managed_fields() -> None:
    """The body kept for every Agent (the policy loop's input) drops managedFields, the
    larger half of it in memory, and keeps all the policy loop and Events read."""
    raw = agent_body("bot")
    await handlers.agent_event(
        event={"type": "ADDED", "object": raw}, body=kopf.Body(raw), namespace="ns", name="bot"
    )
    kept = handlers.STATE.bodies[("ns", "bot")]
    assert "managedFields" not in kept["metadata"]
    assert kept["spec"] == raw["spec"] and kept["status"] == raw["status"]
    assert {k: v for k, v in kept["metadata"].items()} == {
        "name": "bot", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
    }  # fmt: skip
    assert "managedFields" in raw["metadata"]  # kopf's own copy is not changed


class SlowList(Kube):
    """A listing that takes a while (as N children do), counting how often it runs."""

    def __init__(self, api: client.CustomObjectsApi) -> None:
        super().__init__(api)
        self.listings = 0

    def pages(self, kind: Any, namespace: str, selector: str) -> Iterator[list[dict[str, Any]]]:
        self.listings += 1
        time.sleep(0.2)  # the listing's duration (the other threads arrive meanwhile)
        yield []


def test_reconcile_threads_list_an_unprimed_namespace_once() -> None:
    """After the resync's expire every reconcile thread found the namespace unprimed and
    listed all its children at once: 16 copies of N children in memory."""
    kube = SlowList(client.CustomObjectsApi(client.ApiClient()))
    r = reconcile.Reconciler(kube, Settings())
    threads = [threading.Thread(target=r._prime, args=("ns",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert kube.listings == len(CHILD_KINDS)  # one listing per kind, not one per thread
    assert r.cache.primed("ns")
