"""The real node for tests: the same code as `make node-up` (hack/node/node.py).

A session shares one node (bring-up costs about a minute). `ROUSE_REUSE_NODE=1` uses a node
already started by `make node-up` and leaves it running: for iterating on one test by hand.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from rouse_testing.cluster import REPO_ROOT, load_module

node = load_module("rouse_node", REPO_ROOT / "hack" / "node" / "node.py")
NodeError: type[Exception] = node.NodeError


@dataclass
class Node:
    """A running one-node cluster with Knative, as tests see it (the `node` fixture)."""

    kubeconfig: Path
    started_here: bool

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG and the pinned kubectl/helm first on PATH (for hack/ scripts)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{node.ENVTEST_BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """The pinned kubectl against the node; raises with kubectl's stderr if check fails."""
        argv = [str(node.ENVTEST_BIN / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr.strip()}")
        return proc

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """One object as a dict, or None when it does not exist."""
        proc = self.kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name}: {proc.stderr.strip()}")
        obj: dict[str, Any] = json.loads(proc.stdout)
        return obj

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["-n", namespace, "get", kind, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def apply(self, manifests: Sequence[Mapping[str, Any]] | str, namespace: str) -> str:
        """Server-side apply of manifest dicts or YAML text into `namespace`."""
        if isinstance(manifests, str):
            text = manifests
        else:
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
        return self.kubectl(
            "-n", namespace, "apply", "--server-side", "--field-manager=rouse-tests", "-f", "-",
            input=text,
        ).stdout  # fmt: skip

    def create_namespace(self, prefix: str) -> str:
        """A fresh namespace enforcing the restricted Pod Security Standard."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        self.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
        return name

    def delete_namespace(self, name: str) -> None:
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def script(running: Node, name: str, *args: str, timeout: float = 600) -> str:
    """Run one of the hack/kind scripts as a user would, failing with its output."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "kind" / name), *args],
        env=running.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def event_display_log(running: Node, namespace: str) -> str:
    """What the example's event display (hack/kind/example.sh) printed: every broker event."""
    return running.kubectl("-n", namespace, "logs", "deployment/event-display").stdout


@contextmanager
def example(running: Node, agent: str) -> Iterator[str]:
    """examples/<agent> in a new namespace by example.sh (its reply chain asserted); then gone."""
    namespace = f"{agent}-{uuid.uuid4().hex[:6]}"
    script(running, "example.sh", "--namespace", namespace, "--agent", agent, "--assert")
    try:
        yield namespace
    finally:
        running.delete_namespace(namespace)


DISPLAY_MARK = "☁️  cloudevents.Event"


def display_events(running: Node, namespace: str) -> list[dict[str, Any]]:
    """The event display's log as events in arrival order: attributes and JSON data."""
    events = []
    for block in event_display_log(running, namespace).split(DISPLAY_MARK)[1:]:
        head, _, data = block.partition("\nData,\n")
        attributes = {}
        for line in head.splitlines():
            name, sep, value = line.strip().partition(": ")
            if sep and line.startswith("  ") and not line.startswith("    "):
                attributes[name] = value
        attributes["data"] = json.loads(data) if data.strip() else None
        events.append(attributes)
    return events


def send(
    broker: PortForward,
    namespace: str,
    event_type: str,
    data: dict[str, Any],
    event_id: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> str:
    """POST a binary-mode CloudEvent to the namespace's broker through the ingress; its id."""
    event_id = event_id or f"test-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{broker.url}/{namespace}/default",
        headers={
            "ce-id": event_id,
            "ce-specversion": "1.0",
            "ce-type": event_type,
            "ce-source": "/tests/e2e_cluster",
            "content-type": "application/json",
            **{f"ce-{name}": value for name, value in (extensions or {}).items()},
        },
        json=data,
        timeout=30,
    )
    assert response.status_code == 202, (
        f"broker ingress answered {response.status_code}: {response.text}"
    )
    return event_id


def skills_serve_with(running: Node, namespace: str, agent: str, env_name: str) -> bool:
    """Every skill of the Agent served by a Ready latest Revision with env_name in its env.

    For wait_until: it raises naming each skill that is not served yet and why (its Service's
    and Revision's conditions, its pods' waiting containers), which a timeout reports."""
    spec = running.get("agent", agent, namespace)
    assert spec is not None, f"no Agent {agent} in {namespace}"
    ksvcs = running.items("ksvc", namespace, f"rouse.dev/agent={agent}")
    services = {k["metadata"]["name"]: k for k in ksvcs}
    why = [
        f"{skill['name']}: {reason}"
        for skill in spec["spec"]["skills"]
        if (reason := not_served(running, services.get(f"{agent}-{skill['name']}"), env_name))
    ]
    assert not why, "not served yet: " + "; ".join(why)
    return True


def not_served(running: Node, ksvc: dict[str, Any] | None, env_name: str) -> str | None:
    """Why a skill's Service does not serve its latest template yet, or None when it does."""
    if ksvc is None:
        return "no Service"
    name = ksvc["metadata"]["name"]
    namespace = ksvc["metadata"]["namespace"]
    env = ksvc["spec"]["template"]["spec"]["containers"][0].get("env", [])
    if env_name not in {e["name"] for e in env}:
        return f"Service {name}'s template has no {env_name} (not rolled out by the operator)"
    status = ksvc.get("status", {})
    created = status.get("latestCreatedRevisionName")
    if ksvc["metadata"].get("generation") != status.get("observedGeneration") or not created:
        return f"Service {name} generation {ksvc['metadata'].get('generation')} not observed yet"
    if created != status.get("latestReadyRevisionName"):
        revision = running.get("revision", created, namespace) or {"status": {}}
        pods = running.items("pods", namespace, f"serving.knative.dev/revision={created}")
        waiting = "".join(
            f", pod {p['metadata']['name']} container {c['name']} {state['reason']}: "
            f"{state.get('message', '')}"
            for p in pods
            for c in p.get("status", {}).get("containerStatuses", [])
            if (state := c.get("state", {}).get("waiting"))
        )
        return f"Revision {created} not Ready ({unmet(revision)}){waiting}"
    if condition(ksvc, "Ready")["status"] != "True":
        return f"Service {name} not Ready ({unmet(ksvc)})"
    return None


def unmet(obj: dict[str, Any]) -> str:
    """An object's conditions that are not True, with their reasons and messages."""
    pending = [c for c in obj.get("status", {}).get("conditions", []) if c["status"] != "True"]
    said = [f"{c['type']}={c['status']} {c.get('reason')}: {c.get('message')}" for c in pending]
    return ", ".join(said) or "no conditions yet"


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition `kind` of a Kubernetes object (fails when it has none)."""
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind]
    assert found, f"no {kind} condition in {obj['kind']} {obj['metadata']['name']}"
    return found[0]


def route_host(running: Node, service: str, namespace: str) -> str:
    """The host of a Knative Service's Route (`status.url`), as a caller through the ingress
    names it: a public Route's is under the node's public domain, a cluster-local one's under
    svc.cluster.local."""
    ksvc = running.get("ksvc", service, namespace)
    assert ksvc is not None and ksvc["status"].get("url"), f"ksvc {service} has no URL yet"
    host = urlsplit(str(ksvc["status"]["url"])).hostname
    assert host is not None
    return host


# Knative's autoscaler scaling to zero within seconds instead of a minute (benches wait less;
# the cold path is unchanged), and upstream's values put back.
QUICK_AUTOSCALER = {"stable-window": "6s", "scale-to-zero-grace-period": "6s"}
DEFAULT_AUTOSCALER = {"stable-window": "60s", "scale-to-zero-grace-period": "30s"}


@contextmanager
def quick_scale_to_zero(running: Node) -> Iterator[None]:
    def patch(data: dict[str, str], check: bool = True) -> None:
        running.kubectl(
            "-n", "knative-serving", "patch", "configmap", "config-autoscaler", "--type=merge",
            "-p", json.dumps({"data": data}), check=check,
        )  # fmt: skip

    patch(QUICK_AUTOSCALER)
    try:
        yield
    finally:
        patch(DEFAULT_AUTOSCALER, check=False)


def scale_operator(running: Node, namespace: str, replicas: int) -> None:
    """Stop (0) or restart (1) the operator installed in `namespace` (it repairs children and
    replays parked events, which some tests must keep it from doing)."""
    running.kubectl(
        "-n", namespace, "scale", "deployment", "-l", "app.kubernetes.io/component=operator",
        f"--replicas={replicas}",
    )  # fmt: skip


def start_node() -> Node:
    """Bring the node up (or reuse a running one when ROUSE_REUSE_NODE=1)."""
    if os.environ.get("ROUSE_REUSE_NODE") == "1" and node.node_status() == 0:
        return Node(kubeconfig=node.PATHS.kubeconfig, started_here=False)
    started = time.monotonic()
    node.node_up()
    print(f"real node up in {time.monotonic() - started:.0f}s")
    return Node(kubeconfig=node.PATHS.kubeconfig, started_here=True)


def stop_node(running: Node) -> None:
    if running.started_here:
        node.node_down()


def logs_dir() -> Path:
    logs: Path = node.PATHS.logs
    return logs


class PortForward:
    """`kubectl port-forward` to a Service, the way a user reaches the broker from outside."""

    def __init__(self, running: Node, namespace: str, service: str, remote_port: int = 80) -> None:
        from rouse_testing.wait import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                str(node.ENVTEST_BIN / "kubectl"), f"--kubeconfig={running.kubeconfig}",
                "-n", namespace, "port-forward", f"svc/{service}", f"{self.port}:{remote_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


RUNTIME_IMAGE = "ghcr.io/rouse-dev/rouse-runtime:0.1.0"


def script_pod(name: str, script: Path, args: Sequence[str], port: int) -> list[dict[str, Any]]:
    """A test server (a file of rouse_testing) as a restricted pod of the runtime image.

    The file comes from a ConfigMap and runs as `python /srv/<file> ARGS`; a Service `name`
    on port 80 reaches its `port`.
    """
    labels = {"app": name}
    restricted = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": name,
        "image": RUNTIME_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", f"/srv/{script.name}", *args],
        "ports": [{"containerPort": port}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
        "securityContext": restricted,
        "volumeMounts": [{"name": "src", "mountPath": "/srv"}],
    }
    pod_spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
        "containers": [container],
        "volumes": [{"name": "src", "configMap": {"name": name}}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {script.name: script.read_text()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": port}]},
        },
    ]


def parking_token(running: Node, release_namespace: str) -> str:
    """The chart's parking-service credential, read as the README tells a user to."""
    encoded = running.kubectl(
        "-n", release_namespace, "get", "secret", "rouse-parking-token",
        "-o", "jsonpath={.data.token}",
    ).stdout  # fmt: skip
    return base64.b64decode(encoded).decode()
