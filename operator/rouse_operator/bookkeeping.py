"""kopf's last-handled configuration, written in the reconciler's own status apply.

kopf remembers the Agent as last handled (its "diff base") to tell a change from an echo.
In an annotation that is one more write per handled Agent: kopf merge-patches the object
after the handler, and the status subresource cannot take metadata, so the reconciler's
status and kopf's annotation were two writes. Kept in `status.kopf` instead, the handler
puts it into the status apply it makes anyway (`Reconciler.reconcile(handled=...)`), and
`store` leaves kopf's patch empty when that apply carried the same value. When it did not
(the handler failed, or no handler ran), kopf patches it itself, as it would by default.

kopf builds this essence for every watch event of every kind it watches, a deep copy of the
whole object, and compares it only for kinds with spec handlers: the children (watched for
their events alone) get none (`InStatusApply.build`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any, cast

import kopf

from rouse_operator.resources.meta import CHILD_KINDS

FIELD = "last-handled-configuration"  # under status.kopf
CHILDREN = frozenset((kind.api_version, kind.kind) for kind in CHILD_KINDS)


def encode(essence: Any) -> str:
    """As kopf encodes it (StatusDiffBaseStorage.store): compact JSON, so the two compare."""
    return json.dumps(essence, separators=(",", ":"))


class InStatusApply(kopf.StatusDiffBaseStorage):
    """status.kopf.last-handled-configuration, normally written by the reconciler."""

    def __init__(self) -> None:
        super().__init__(field=f"status.kopf.{FIELD}")
        self._written: dict[tuple[str, str], str] = {}
        self._guard = threading.Lock()

    def written(self, namespace: str, name: str, encoded: str) -> None:
        """The reconciler's status apply carried `encoded` for this Agent."""
        with self._guard:
            self._written[(namespace, name)] = encoded

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._written.pop((namespace, name), None)

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        """The essence kopf compares, for Agents; none for a child (a Knative Service's event
        cost a deep copy of the Service, managedFields and status included, for nothing)."""
        if (body.get("apiVersion"), body.get("kind")) in CHILDREN:
            # kopf takes None as "no essence" (its _detect_causes, kopf 1.45; only there).
            return cast(kopf.BodyEssence, None)
        return super().build(body=body, extra_fields=extra_fields)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        meta = body.get("metadata") or {}
        with self._guard:
            carried = self._written.pop((str(meta.get("namespace")), str(meta.get("name"))), None)
        if carried != encode(essence):
            super().store(body=body, patch=patch, essence=essence)


class Progress(kopf.AnnotationsProgressStorage):
    """kopf's per-handler progress in `rouse.dev/<handler>` annotations, without its marker.

    kopf adds `rouse.dev/kopf-managed: yes` on an object's first handling so that other
    kopf-based operators recognise the prefix as kopf's. With the last-handled configuration
    in the status apply, that marker was kopf's only metadata write for a new Agent: one
    more write per Agent for a hint. The progress annotations exist only while a handler
    retries, and the status subresource cannot carry metadata.
    """

    def __init__(self) -> None:
        super().__init__(prefix="rouse.dev")

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return None
