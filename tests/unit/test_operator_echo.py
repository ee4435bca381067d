"""A child's watch event that arrives while the reconciler's apply of it is still in flight:
its own echo is recognised (no second reconcile), someone else's later write is not lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from rouse_operator import reconcile
from rouse_operator.kube import Kube
from rouse_operator.resources.meta import SERVICE
from rouse_operator.settings import Settings

MANIFEST = {"metadata": {"namespace": "ns", "name": "bot-s"}}


class ApplyWithEvents(Kube):
    """An apply during which the watch delivers events (calls `during`), returning version 7."""

    during: Callable[[], None] = staticmethod(lambda: None)

    def apply(self, kind: Any, manifest: Any, force: bool) -> Any:
        self.during()
        return {"metadata": {**manifest["metadata"], "resourceVersion": "7"}}


def reconciler_whose_apply(during: Callable[[reconcile.Reconciler], None]) -> reconcile.Reconciler:
    kube = ApplyWithEvents(client.CustomObjectsApi(client.ApiClient()))
    made = reconcile.Reconciler(kube, Settings())
    kube.during = lambda: during(made)
    return made


def test_the_echo_arriving_before_the_apply_returns_is_ours() -> None:
    seen: list[bool] = []
    r = reconciler_whose_apply(lambda r: seen.append(r.ours("Service", "ns", "bot-s", "7")))
    r._apply(SERVICE, MANIFEST, "bot", force=False)
    assert seen == [True]  # the event was held for the apply's answer
    assert not r._take_dirty("ns", "bot")  # it was our own write: nothing to do again
    assert r.ours("Service", "ns", "bot-s", "7") and not r.ours("Service", "ns", "bot-s", "8")


def test_a_newer_write_seen_during_the_apply_reconciles_again() -> None:
    r = reconciler_whose_apply(lambda r: r.ours("Service", "ns", "bot-s", "9"))
    r._apply(SERVICE, MANIFEST, "bot", force=False)
    assert r._take_dirty("ns", "bot")  # version 9 came after ours (7): someone else wrote
    assert not r._take_dirty("ns", "bot")  # taken once


def test_an_older_event_seen_during_the_apply_is_superseded() -> None:
    r = reconciler_whose_apply(lambda r: r.ours("Service", "ns", "bot-s", "5"))
    r._apply(SERVICE, MANIFEST, "bot", force=False)
    assert not r._take_dirty("ns", "bot")
