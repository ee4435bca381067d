"""Per-Agent state of the operator is pruned when an Agent is deleted (it grew forever)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from rouse_operator import handlers, reconcile
from rouse_operator.kube import Kube
from rouse_operator.resources.meta import SERVICE
from rouse_operator.settings import Settings


def child(name: str, agent: str) -> dict[str, object]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "3",
                     "labels": {"rouse.dev/agent": agent}},
    }  # fmt: skip


@pytest.fixture
def reconciler() -> Iterator[reconcile.Reconciler]:
    """A Reconciler whose API client is never called here, installed as the handlers' own."""
    made = reconcile.Reconciler(Kube(client.CustomObjectsApi(client.ApiClient())), Settings())
    saved = handlers.STATE.reconciler
    handlers.STATE.reconciler = made
    yield made
    handlers.STATE.reconciler = saved


def test_forget_agent_drops_its_lock_and_cached_children(
    reconciler: reconcile.Reconciler,
) -> None:
    for agent in ("bot", "other"):
        reconciler._lock("ns", agent)
        reconciler.cache.put(SERVICE, child(f"{agent}-a", agent))
    assert (reconciler.locks(), reconciler.cache.agents()) == (2, 2)
    reconciler.forget_agent("ns", "bot")
    assert (reconciler.locks(), reconciler.cache.agents()) == (1, 1)
    assert reconciler.cache.children("ns", "other")[SERVICE]  # the other Agent is untouched


def test_a_lock_held_by_a_reconcile_in_flight_is_kept(reconciler: reconcile.Reconciler) -> None:
    """Dropping a held lock would let a second reconcile of the same Agent run at once."""
    lock = reconciler._lock("ns", "bot")
    with lock:
        reconciler.forget_agent("ns", "bot")
        assert reconciler._lock("ns", "bot") is lock
    reconciler.forget_agent("ns", "bot")
    assert reconciler.locks() == 0


async def test_the_deleted_event_prunes_every_per_agent_store(
    reconciler: reconcile.Reconciler,
) -> None:
    """kopf's DELETED watch event (no finalizer needed) clears the handlers' maps too."""
    key = ("ns", "bot")
    handlers.STATE.known[key] = object()
    handlers.STATE.bodies[key] = {}  # type: ignore[assignment]
    handlers.STATE.contexts[key] = contextvars.copy_context()
    reconciler._lock(*key)
    reconciler.cache.put(SERVICE, child("bot-a", "bot"))
    await handlers.agent_event(event={"type": "DELETED"}, body={}, namespace="ns", name="bot")  # type: ignore[arg-type]
    assert key not in handlers.STATE.known
    assert key not in handlers.STATE.bodies and key not in handlers.STATE.contexts
    assert (reconciler.locks(), reconciler.cache.agents()) == (0, 0)


def test_pruning_never_lets_two_reconciles_of_one_agent_run_at_once(
    reconciler: reconcile.Reconciler,
) -> None:
    """Threads reconciling one Agent while others prune it (late child events after its
    deletion): at most one is ever inside, and no lock is left behind at the end."""
    inside = 0
    most = 0
    count = threading.Lock()

    def worker() -> None:
        nonlocal inside, most
        for _ in range(300):
            with reconciler._exclusive("ns", "bot"):
                with count:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0)  # let another thread try to get in
                with count:
                    inside -= 1
            reconciler.forget_agent("ns", "bot")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    assert reconciler.locks() == 0
