"""The envtest control plane is a real cluster: Knative objects round-trip, GC cascades, RBAC holds."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
from typing import Any

import httpx
import yaml
from rouse_testing.cluster import Cluster
from rouse_testing.knative import knative_objects
from rouse_testing.wait import wait_until


def get_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", "-o", "json", *args).stdout)
    return result


def exists(cluster: Cluster, namespace: str, kind: str, name: str) -> bool:
    proc = cluster.kubectl(
        "get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name", check=False
    )
    assert proc.returncode == 0, proc.stderr
    return bool(proc.stdout.strip())


def test_knative_service_trigger_and_ping_source_round_trip(
    cluster: Cluster, namespace: str
) -> None:
    objects = knative_objects(namespace)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    for sent, kind in zip(
        objects, ["services.serving.knative.dev", "triggers", "pingsources"], strict=True
    ):
        got = get_json(cluster, kind, sent["metadata"]["name"], "-n", namespace)
        assert (got["apiVersion"], got["kind"]) == (sent["apiVersion"], sent["kind"])
        assert got["metadata"]["labels"] == sent["metadata"]["labels"]
        assert got["spec"] == sent["spec"]


def test_default_broker_exists_in_default_and_test_namespaces(
    cluster: Cluster, namespace: str
) -> None:
    for ns in ("default", namespace):
        broker = get_json(cluster, "brokers.eventing.knative.dev", "default", "-n", ns)
        assert broker["metadata"]["annotations"] == {
            "eventing.knative.dev/broker.class": "MTChannelBasedBroker"
        }


def test_garbage_collector_deletes_owned_objects_with_their_owner(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "owner", "namespace": namespace},
            }
        ]
    )
    uid = get_json(cluster, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    owned = knative_objects(namespace, owner)
    bystander = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bystander", "namespace": namespace},
    }
    cluster.apply([*owned, bystander])
    kinds = [
        ("services.serving.knative.dev", "hello"),
        ("triggers", "hello-greeting"),
        ("pingsources", "hello-every-15m"),
    ]
    assert all(exists(cluster, namespace, kind, name) for kind, name in kinds)

    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    wait_until(
        lambda: not any(exists(cluster, namespace, kind, name) for kind, name in kinds),
        timeout=60,
        interval=0.2,
        what="the garbage collector to delete the Service, Trigger and PingSource owned by the ConfigMap",
    )
    assert exists(cluster, namespace, "configmap", "bystander"), (
        "GC deleted an object it did not own"
    )


def test_rbac_is_enforced_for_service_account_tokens(cluster: Cluster, namespace: str) -> None:
    # The service-account controller (kube-controller-manager) creates `default`; tokens are signed.
    wait_until(
        lambda: exists(cluster, namespace, "serviceaccount", "default"),
        timeout=30,
        what="the service account controller to create the default service account",
    )
    token = cluster.kubectl("create", "token", "default", "-n", namespace).stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    response = httpx.get(
        f"{cluster.server}/api/v1/namespaces/{namespace}/pods",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cadata=ca),
    )
    assert response.status_code == 403  # authenticated by the signed token, refused by RBAC
    assert response.json()["message"] == (
        f'pods is forbidden: User "system:serviceaccount:{namespace}:default" '
        f'cannot list resource "pods" in API group "" in the namespace "{namespace}"'
    )

    can = cluster.kubectl(
        "auth", "can-i", "create", "services.serving.knative.dev", "-n", namespace, check=False
    )
    assert can.stdout.strip() == "yes"  # the admin user (system:masters)


def test_kubectl_and_server_are_the_pinned_version(cluster: Cluster) -> None:
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == "v1.36.3"
    assert versions["clientVersion"]["gitVersion"] == "v1.36.3"
    # Tools started with cluster.env find the envtest kubectl and helm first on PATH.
    assert shutil.which("kubectl", path=cluster.env["PATH"]) == str(cluster.bin_dir / "kubectl")
    assert shutil.which("helm", path=cluster.env["PATH"]) == str(cluster.bin_dir / "helm")
    proc = subprocess.run(
        ["kubectl", "get", "namespace", "default", "-o", "name"],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "namespace/default"
