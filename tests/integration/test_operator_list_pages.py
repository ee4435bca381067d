"""The reconciler lists a namespace's children page by page (issue 14: one answer of N
children was a memory peak that grew with N), and still sees every one of them."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config
from rouse_operator import kube
from rouse_operator.resources.meta import LABEL_MANAGED_BY, MANAGED_BY, SELECTOR, TRIGGER


def trigger(name: str, managed: bool) -> dict[str, Any]:
    labels = {LABEL_MANAGED_BY: MANAGED_BY if managed else "someone-else"}
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "labels": labels},
        "spec": {"broker": "default", "subscriber": {"uri": "http://example.invalid/"}},
    }


def test_pages_return_every_matching_child_and_no_other(
    cluster: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.load_kube_config(str(cluster.kubeconfig))
    api = client.CustomObjectsApi()
    for i in range(5):
        api.create_namespaced_custom_object(
            TRIGGER.group, TRIGGER.version, namespace, TRIGGER.plural, trigger(f"t{i}", True)
        )
    api.create_namespaced_custom_object(
        TRIGGER.group, TRIGGER.version, namespace, TRIGGER.plural, trigger("foreign", False)
    )
    monkeypatch.setattr(kube, "LIST_PAGE", 2)
    reader = kube.Kube(api)
    pages = list(reader.pages(TRIGGER, namespace, SELECTOR))
    assert [len(page) for page in pages] == [2, 2, 1]
    names = sorted(obj["metadata"]["name"] for obj in reader.list(TRIGGER, namespace, SELECTOR))
    assert names == [f"t{i}" for i in range(5)]
