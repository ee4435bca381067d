"""The warm floor's builders: which Revisions carry it, what they carry, the patch."""

from __future__ import annotations

from rouse_operator.resources.floor import floor_of, floor_patch, serving_revisions


def test_serving_revisions_are_latest_created_and_ready_once_each() -> None:
    rolling = {"status": {"latestCreatedRevisionName": "s-2", "latestReadyRevisionName": "s-1"}}
    settled = {"status": {"latestCreatedRevisionName": "s-2", "latestReadyRevisionName": "s-2"}}
    assert serving_revisions(rolling) == ["s-2", "s-1"]
    assert serving_revisions(settled) == ["s-2"]
    assert serving_revisions({"status": {}}) == []  # Knative has not made one yet
    assert serving_revisions(None) == []


def test_floor_of_reads_min_scale_and_ignores_junk() -> None:
    def revision(annotations: dict[str, str]) -> dict[str, object]:
        return {"metadata": {"annotations": annotations}}

    assert floor_of(revision({"autoscaling.knative.dev/min-scale": "3"})) == 3
    assert floor_of(revision({"autoscaling.knative.dev/min-scale": "x"})) is None
    assert floor_of(revision({})) is None
    assert floor_of({"metadata": {}}) is None


def test_floor_patch_touches_only_min_scale() -> None:
    assert floor_patch(2) == {
        "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "2"}}
    }
