"""kopf's last-handled configuration: written by the reconciler's status apply when it carried
it (kopf's patch stays empty: one write per handled Agent), by kopf's own patch otherwise."""

from __future__ import annotations

import kopf
from rouse_operator.bookkeeping import InStatusApply, Progress, encode

BODY = kopf.Body(
    {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"namespace": "ns", "name": "a"},
        "spec": {"image": "i"},
    }
)


def test_carried_by_the_status_apply_kopf_writes_nothing() -> None:
    storage, patch = InStatusApply(), kopf.Patch()
    essence = storage.build(body=BODY)
    storage.written("ns", "a", encode(essence))
    storage.store(body=BODY, patch=patch, essence=essence)
    assert not patch
    assert (
        storage.fetch(
            body=kopf.Body({"status": {"kopf": {"last-handled-configuration": encode(essence)}}})
        )
        == essence
    )


def test_not_carried_kopf_patches_it_as_usual() -> None:
    storage, patch = InStatusApply(), kopf.Patch()
    essence = storage.build(body=BODY)
    storage.written("ns", "a", encode({"spec": {"image": "older"}}))  # a different handling
    storage.store(body=BODY, patch=patch, essence=essence)
    assert patch == {"status": {"kopf": {"last-handled-configuration": encode(essence)}}}
    patch = kopf.Patch()
    storage.store(body=BODY, patch=patch, essence=essence)  # nothing carried at all
    assert patch["status"]["kopf"]["last-handled-configuration"] == encode(essence)


def test_an_agent_has_an_essence_a_child_none() -> None:
    """kopf compares essences only for the Agents (spec handlers); a child's would be a deep copy
    of it per watch event for nothing."""
    storage = InStatusApply()
    assert storage.build(body=BODY) == {"spec": {"image": "i"}}
    for api_version, kind in (
        ("serving.knative.dev/v1", "Service"),
        ("eventing.knative.dev/v1", "Trigger"),
        ("sources.knative.dev/v1", "PingSource"),
    ):
        child = kopf.Body({**BODY, "apiVersion": api_version, "kind": kind})
        assert storage.build(body=child) is None
    # Same name, another group: not a child of Rouse's, it keeps its essence.
    other = kopf.Body({**BODY, "apiVersion": "v1", "kind": "Service"})
    assert storage.build(body=other) == {"spec": {"image": "i"}}


def test_progress_is_stored_without_kopfs_marker_annotation() -> None:
    """Progress overrides a private kopf method (pinned in operator/pyproject.toml): if kopf
    renames it, the marker comes back as one more write per Agent and this fails."""
    patch = kopf.Patch()
    record = {"started": "2026-01-01T00:00:00", "retries": 1, "success": False, "failure": False}
    Progress().store(key=kopf.HandlerId("agent_changed"), record=record, body=BODY, patch=patch)  # type: ignore[arg-type]
    annotations = dict(patch["metadata"]["annotations"])
    assert "rouse.dev/agent_changed" in annotations
    assert "rouse.dev/kopf-managed" not in annotations
