"""A skill's warm floor, set on the Revisions that serve it instead of the Service's template.

A min-scale on the revision template makes Knative roll out a new Revision for every
warm-pool change. A Revision's metadata, unlike its spec, may change; Knative's Revision
reconciler copies its `autoscaling.knative.dev/*` annotations to its PodAutoscaler (and
puts back any set on the PodAutoscaler itself), and the autoscaler reads min-scale from
there. So the floor patched onto the Revision moves the pod count with no rollout, and no
Knative reconciler writes that annotation back. The template keeps `scaling.min`: a Revision
created later (a spec change) starts from the spec's floor until the reconciler patches it.
"""

from __future__ import annotations

from typing import Any

from rouse_operator.resources.meta import Manifest
from rouse_operator.resources.service import MIN_SCALE

Obj = dict[str, Any]


def serving_revisions(ksvc: Obj | None) -> list[str]:
    """The Revisions that serve or are about to serve the Service: the latest created and
    the latest ready (different during a rollout). Older ones get no traffic, and Knative
    ignores min-scale on a Revision that is not routed."""
    status = (ksvc or {}).get("status") or {}
    names = (status.get("latestCreatedRevisionName"), status.get("latestReadyRevisionName"))
    return list(dict.fromkeys(str(n) for n in names if n))


def floor_of(revision: Obj) -> int | None:
    """The min-scale a Revision carries now (None when unset or not a number)."""
    value = str(((revision.get("metadata") or {}).get("annotations") or {}).get(MIN_SCALE))
    return int(value) if value.isdigit() else None


def floor_patch(min_scale: int) -> Manifest:
    """The JSON merge patch that sets a Revision's floor (a merge patch never creates)."""
    return {"metadata": {"annotations": {MIN_SCALE: str(min_scale)}}}
