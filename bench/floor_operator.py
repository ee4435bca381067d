"""The write floor: a kopf operator making exactly the writes Rouse's contract asks for a new
Agent, and nothing else (bench/operator_scale.py runs it beside the no-op and Rouse).

Per Agent: each child Rouse's builders produce (`children.desired`, stamped with its spec hash
as the reconciler applies it) by server-side apply, then one status apply carrying the status
Rouse would compute from those children and kopf's last-handled configuration (bookkeeping.py:
kopf's own patch is then empty). The kopf settings are Rouse's. No reads, no checks, no Events,
no policy, no watch of the children: what is left between this and Rouse is Rouse's own cost.

    python bench/floor_operator.py <namespace>...
"""

from __future__ import annotations

import sys
from typing import Any

import kopf
from rouse_operator import bookkeeping, kopf_tuning, status
from rouse_operator.kube import Kube
from rouse_operator.reconcile import with_hash
from rouse_operator.resources import children
from rouse_operator.resources.meta import CHILD_KINDS, ChildKind
from rouse_operator.settings import from_env

SETTINGS = from_env()
DIFF_BASE = bookkeeping.InStatusApply()
KUBE: list[Kube] = []  # one client, made in the startup handler


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    kopf_tuning.tune(settings, DIFF_BASE)
    KUBE.append(Kube.connect())


@kopf.on.resume("rouse.dev", "v1alpha1", "agents")
@kopf.on.create("rouse.dev", "v1alpha1", "agents")
@kopf.on.update("rouse.dev", "v1alpha1", "agents")
def write_floor(body: kopf.Body, namespace: str | None, name: str, new: Any, **_: Any) -> None:
    agent = dict(body)
    kinds = {k.kind: k for k in CHILD_KINDS}
    applied: dict[ChildKind, list[dict[str, Any]]] = {k: [] for k in CHILD_KINDS}
    for manifest in children.desired(agent, SETTINGS):
        kind = kinds[manifest["kind"]]
        applied[kind].append(KUBE[0].apply(kind, with_hash(manifest), force=False))
    written = status.compute(agent, applied)
    encoded = bookkeeping.encode(new)
    written["kopf"] = {bookkeeping.FIELD: encoded}
    KUBE[0].apply_status(str(namespace), name, written)
    DIFF_BASE.written(str(namespace), name, encoded)


if __name__ == "__main__":
    kopf.configure(verbose=False)
    kopf.run(standalone=True, namespaces=sys.argv[1:])
