"""All Kubernetes API I/O of the reconciler, in one place (kubernetes client, CustomObjectsApi).

Children are written with server-side apply (field manager `rouse`): only the fields
Rouse sets are owned and compared, so Knative's defaulting of other fields is not
fought, a field Rouse stops setting is removed, and a hand edit of a Rouse-owned
field is put back (force=True takes ownership back).

API resources and verbs the operator uses (the ClusterRole in charts/rouse lists these):

- rouse.dev/agents: get, list, watch, patch   (kopf watches Agents and keeps its progress in
  annotations; the reconciler reads each Agent fresh)
- rouse.dev/agents/status: get, patch          (status written with server-side apply)
- rouse.dev/agents/finalizers: update          (children's ownerReferences set
  blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement admission plugin allows
  only to who may update the owner's finalizers)
- serving.knative.dev/services: get, list, watch, create, patch, delete
- eventing.knative.dev/triggers: get, list, watch, create, patch, delete
- sources.knative.dev/pingsources: get, list, watch, create, patch, delete
  (server-side apply that creates an object needs create as well as patch)
- serving.knative.dev/revisions: get, patch     (a skill's warm floor, min-scale on the
  Revisions that serve it: resources/floor.py)
- eventing.knative.dev/brokers: get            (does the Agent's broker exist?)
- "" events: create                            (kopf.info/kopf.warn post new core v1 Events;
  kopf never patches them, nor uses events.k8s.io)
- apiextensions.k8s.io/customresourcedefinitions: list, watch  (optional: kopf notices CRDs
  installed after it started)
- "" namespaces: list, watch                   (only when namespaces are given as globs)
- coordination.k8s.io/leases: create; get, update on the operator's own Lease only, in its
  own namespace (a namespaced Role; only with --leader-elect, see leader.py)
Not needed: kopf peering objects (kopf runs standalone; leader election decides which replica
runs it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rouse_operator.resources.meta import BROKER, ChildKind, Manifest

FIELD_MANAGER = "rouse"
APPLY = "application/apply-patch+yaml"
POOL_SIZE = 32  # >= kopf's handler threads (settings.execution.max_workers = 16) plus timers
LIST_PAGE = 500  # objects per LIST answer (the API server's continue token pages the rest)
AGENTS = ChildKind("rouse.dev", "v1alpha1", "agents", "Agent")
Page = list[dict[str, Any]]  # (a name: inside Kube, `list` is its method)


class ConflictError(Exception):
    """A child's name is taken by an object that is not this Agent's (server-side apply 409)."""


class RejectedError(Exception):
    """The API server (or an admission webhook such as Knative's) refused a child for good."""


def api_message(exc: ApiException) -> str:
    """The Status message the API server sent, else the HTTP reason."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return str(message or exc.reason)


def load_config() -> None:
    """In-cluster config in a pod, else the current kubeconfig (KUBECONFIG or ~/.kube/config)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config()  # type: ignore[no-untyped-call]


@dataclass
class Kube:
    """The calls the reconciler makes; one CustomObjectsApi over one connection pool."""

    api: client.CustomObjectsApi

    @classmethod
    def connect(cls) -> Kube:
        """A client for the current config, with a connection per handler thread (no churn)."""
        load_config()
        configuration = client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = POOL_SIZE
        return cls(client.CustomObjectsApi(client.ApiClient(configuration)))

    def get(self, kind: ChildKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            obj = cast(
                dict[str, Any],
                self.api.get_namespaced_custom_object(
                    kind.group, kind.version, namespace, kind.plural, name
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def get_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(AGENTS, namespace, name)

    def broker_exists(self, namespace: str, name: str) -> bool:
        return self.get(BROKER, namespace, name) is not None

    def list(self, kind: ChildKind, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects of `kind` in `namespace` matching the label selector."""
        return [obj for page in self.pages(kind, namespace, selector) for obj in page]

    def pages(self, kind: ChildKind, namespace: str, selector: str) -> Iterator[Page]:
        """The same objects LIST_PAGE at a time: one answer for N children was N objects
        decoded at once, a peak that grew with N and stayed in the allocator afterwards."""
        token: str | None = None
        while True:
            result = cast(
                dict[str, Any],
                self.api.list_namespaced_custom_object(
                    kind.group, kind.version, namespace, kind.plural,
                    label_selector=selector, limit=LIST_PAGE, _continue=token,
                ),
            )  # fmt: skip
            yield result.get("items") or []
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return

    def apply(self, kind: ChildKind, manifest: Manifest, force: bool) -> dict[str, Any]:
        """Server-side apply; ConflictError when another manager owns a field and force is False."""
        meta = manifest["metadata"]
        try:
            # Raw response: this client maps only 200 to a body, and an apply that creates is 201.
            response = self.api.patch_namespaced_custom_object(
                kind.group,
                kind.version,
                meta["namespace"],
                kind.plural,
                meta["name"],
                manifest,
                field_manager=FIELD_MANAGER,
                force=force,
                _content_type=APPLY,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(f"{kind.kind} {meta['name']}: {api_message(exc)}") from exc
            if exc.status in (400, 403, 404, 422):  # retrying the same request cannot help
                raise RejectedError(f"{kind.kind} {meta['name']}: {api_message(exc)}") from exc
            raise
        return cast(dict[str, Any], json.loads(cast(Any, response).data))

    def merge_patch(
        self, kind: ChildKind, namespace: str, name: str, patch: Manifest
    ) -> dict[str, Any] | None:
        """JSON merge patch of an object Rouse does not own (a Revision's warm floor); None
        when it is gone. Never creates, and takes no field ownership from its maker."""
        try:
            result = self.api.patch_namespaced_custom_object(
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status in (400, 403, 422):  # refused (a webhook, or RBAC): say so
                raise RejectedError(f"{kind.kind} {name}: {api_message(exc)}") from exc
            raise
        return cast(dict[str, Any], result)

    def delete(self, kind: ChildKind, namespace: str, name: str) -> bool:
        """Delete (background propagation); False when it was already gone."""
        try:
            self.api.delete_namespaced_custom_object(
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                name,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def apply_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        field_manager: str = FIELD_MANAGER,
    ) -> str | None:
        """Server-side apply of the status fields `field_manager` owns (the reconciler's by
        default; the policy loop's as `rouse-policy`); an Agent deleted meanwhile is no error.
        Returns the Agent's resourceVersion after the write (None: it was gone)."""
        body = {
            "apiVersion": AGENTS.api_version,
            "kind": AGENTS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        try:
            data, _, _ = self.api.patch_namespaced_custom_object_status_with_http_info(
                AGENTS.group,
                AGENTS.version,
                namespace,
                AGENTS.plural,
                name,
                body,
                field_manager=field_manager,
                force=True,
                _content_type=APPLY,
            )
        except ApiException as exc:
            if exc.status != 404:  # the Agent was deleted meanwhile: nothing to report on
                raise
            return None
        written = data if isinstance(data, dict) else {}
        return str((written.get("metadata") or {}).get("resourceVersion") or "") or None
