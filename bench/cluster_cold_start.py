"""A skill's cold start on the real node vs the same image as a plain Deployment, with the breakdown.

On the one-node cluster with real Knative (hack/node, `make node-build` first; the node is
brought up and taken down here, or reused with ROUSE_REUSE_NODE=1), the chart and the hello
example are installed as a user does (hack/kind/deploy.sh, example.sh). Each round:

- rouse: the skill scaled to zero; an event POSTed to the broker -> ingress -> channel ->
  filter -> Trigger -> activator (holds it) -> a new pod -> the reply back through the broker to
  a second Trigger's subscriber. Timed from the POST to the reply's arrival.
- plain: the same image and env as a plain Deployment + Service, scaled 0 -> 1 through the
  API, the same CloudEvent POSTed to its Service until it answers 2xx (a client that retries,
  as nothing holds the request). Timed from the scale call to the answer.

Both clients run in one pod in the cluster (bench/cluster_cold_start_probe.py, in the
operator image), the pods are watched from here; one machine, one clock. Breakdown (medians):

  pod created   request -> the new Pod object (Knative: activator -> autoscaler -> Deployment ->
                ReplicaSet; plain: scale -> ReplicaSet)
  schedule      -> the Pod bound to the node
  sandbox       -> PodReadyToStartContainers (network namespace, pause container, CNI)
  containers    -> every container running (image already on the node)
  ready         -> the Pod Ready (readiness probes: Knative's queue-proxy probes the runtime
                   every few ms; the plain pod's kubelet probe runs every second)
  answered      -> the reply seen (rouse: activator hand-off + handler + reply via the broker;
                   plain: endpoints + kube-proxy rules + handler)
  warm          a warm event the same way right after (what delivery alone costs)
  interp+import rouse_startup_seconds from the skill's own /metrics (process start -> app ready)

The watch sees status changes as the kubelet reports them (tens of ms late at most). Timings
are wall times on a shared 2-core machine. The last line is the ratio of the medians.

Usage: python bench/cluster_cold_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from rouse_testing.node import (  # noqa: E402
    Node,
    PortForward,
    quick_scale_to_zero,
    script,
    start_node,
    stop_node,
)
from rouse_testing.wait import wait_until  # noqa: E402

ROUSE_NAMESPACE = "rouse-system"
SERVICE = "hello-greet"
EVENT_TYPE, REPLY_TYPE = "dev.rouse.hello", "dev.rouse.hello.greeted"
PLAIN = "plain-hello"
OPERATOR_IMAGE = "ghcr.io/rouse-dev/rouse-operator:0.1.0"
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
STEPS = ("created", "scheduled", "sandbox", "running", "ready")


@dataclass
class PodTimes:
    """When this watch first saw each step of one pod (time.time())."""

    name: str
    labels: dict[str, str]
    ip: str = ""
    seen: dict[str, float] = field(default_factory=dict)


class PodWatch:
    """Watches the namespace's pods in a thread and records each step's first sighting."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.pods: dict[str, PodTimes] = {}
        self.lock = threading.Lock()
        self.stream = watch.Watch()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        api = client.CoreV1Api()
        for event in self.stream.stream(api.list_namespaced_pod, self.namespace):
            now = time.time()
            pod = event["object"]
            with self.lock:
                times = self.pods.setdefault(
                    pod.metadata.name, PodTimes(pod.metadata.name, dict(pod.metadata.labels or {}))
                )
                times.ip = pod.status.pod_ip or times.ip
                for step in self._steps(pod):
                    times.seen.setdefault(step, now)

    @staticmethod
    def _steps(pod: Any) -> list[str]:
        steps = ["created"]
        if pod.spec.node_name:
            steps.append("scheduled")
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if conditions.get("PodReadyToStartContainers") == "True":
            steps.append("sandbox")
        statuses = pod.status.container_statuses or []
        if statuses and all(s.state.running for s in statuses):
            steps.append("running")
        if conditions.get("Ready") == "True":
            steps.append("ready")
        return steps

    def new_pod(self, label: str, value: str, after: float) -> PodTimes:
        """The pod with `label`=`value` first seen after `after` (the round's pod)."""
        with self.lock:
            found = [
                p
                for p in self.pods.values()
                if p.labels.get(label) == value and p.seen.get("created", 0) >= after - 0.05
            ]
        if len(found) != 1:
            raise AssertionError(f"expected one new pod with {label}={value}, saw {found}")
        return found[0]

    def live(self, running: Node, selector: str) -> int:
        return len(running.items("pods", self.namespace, selector))


def plain_manifests(namespace: str, ksvc: dict[str, Any]) -> list[dict[str, Any]]:
    """The skill's image and env as a plain Deployment (0 replicas) and Service."""
    template = ksvc["spec"]["template"]["spec"]
    skill = template["containers"][0]
    labels = {"app": PLAIN}
    env = [*skill.get("env", []), {"name": "PORT", "value": "8080"}]
    container = {
        "name": "skill",
        "image": skill["image"],
        "env": env,
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
        "securityContext": RESTRICTED,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": PLAIN, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "containers": [container],
                        "volumes": [{"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": PLAIN, "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]


def probe_manifests(namespace: str) -> list[dict[str, Any]]:
    """The probe pod (may scale the plain Deployment, nothing else), its Service, and a Trigger
    that delivers the skill's replies to it."""
    labels = {"app": "probe"}
    source = (REPO / "bench" / "cluster_cold_start_probe.py").read_text()
    env = {
        "BROKER": f"http://broker-ingress.knative-eventing.svc.cluster.local/{namespace}/default",
        "PLAIN": f"http://{PLAIN}.{namespace}.svc.cluster.local/",
        "DEPLOYMENT": PLAIN,
        "NAMESPACE": namespace,
        "EVENT_TYPE": EVENT_TYPE,
    }
    meta = {"namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "probe", **meta}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "probe", **meta},
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments/scale"],
                    "resourceNames": [PLAIN],
                    "verbs": ["patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "probe", **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "probe"},
            "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "probe", **meta},
            "data": {"probe.py": source},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "labels": labels, **meta},
            "spec": {
                "serviceAccountName": "probe",
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                "containers": [
                    {
                        "name": "probe",
                        "image": OPERATOR_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "/srv/probe.py"],
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        "securityContext": RESTRICTED,
                        "volumeMounts": [{"name": "src", "mountPath": "/srv"}],
                    }
                ],
                "volumes": [{"name": "src", "configMap": {"name": "probe"}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "probe", **meta},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "probe", **meta},
            "spec": {
                "broker": "default",
                "filter": {"attributes": {"type": REPLY_TYPE}},
                "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "probe"}},
            },
        },
    ]


def setup(running: Node) -> str:
    """Chart, hello example, plain copy, probe."""
    script(running, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    namespace = f"cold-{uuid.uuid4().hex[:6]}"
    for attempt in (1, 2):  # on a loaded machine Knative's webhooks restart now and then
        for where, webhook in (
            ("knative-eventing", "eventing-webhook"),
            ("knative-serving", "webhook"),
        ):
            running.kubectl(
                "-n", where, "rollout", "status", f"deployment/{webhook}", "--timeout=120s"
            )
        try:
            script(running, "example.sh", "--namespace", namespace, "--agent", "hello", "--assert")
            break
        except AssertionError as exc:
            if attempt == 2:
                raise
            print(f"example.sh failed once, again: {str(exc).splitlines()[-1]}", flush=True)
    ksvc = running.get("ksvc", SERVICE, namespace)
    assert ksvc is not None
    running.apply(plain_manifests(namespace, ksvc) + probe_manifests(namespace), namespace)
    running.kubectl("-n", namespace, "wait", "pod/probe", "--for=condition=Ready", "--timeout=120s")
    running.kubectl(
        "-n", namespace, "wait", "trigger/probe", "--for=condition=Ready", "--timeout=120s"
    )
    return namespace


def call(probe: PortForward, path: str, timeout: float = 180) -> dict[str, Any]:
    response = httpx.get(f"{probe.url}{path}", timeout=timeout)
    result: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise AssertionError(f"probe {path}: {result}")
    return result


def one_round(
    running: Node, namespace: str, pods: PodWatch, probe: PortForward, kind: str, index: int
) -> dict[str, float]:
    """One cold start of `kind` (rouse|plain) and a warm request after it: the breakdown."""
    if kind == "rouse":
        label, value = "serving.knative.dev/service", SERVICE
    else:
        label, value = "app", PLAIN
    wait_until(
        lambda: pods.live(running, f"{label}={value}") == 0,
        timeout=240,
        interval=1,
        what=f"{kind}: no pod left (scaled to zero)",
    )
    cold = call(probe, f"/round?kind={kind}&name=cold{kind}{index}")
    warm = call(probe, f"/round?kind={kind}-warm&name=warm{kind}{index}")
    pod = pods.new_pod(label, value, cold["t0"])
    wait_until(lambda: "ready" in pod.seen, timeout=10, what=f"{pod.name} seen Ready")
    result = {"total": cold["t1"] - cold["t0"]}
    previous = cold["t0"]
    for step in STEPS:
        at = pod.seen.get(step, previous)
        result[step] = at - previous
        previous = at
    result["answered"] = cold["t1"] - previous
    result["warm"] = warm["t1"] - warm["t0"]
    result["interp+import"] = call(probe, f"/startup?ip={pod.ip}")["startup"]
    if kind == "plain":
        running.kubectl("-n", namespace, "scale", f"deployment/{PLAIN}", "--replicas=0")
    return result


def report(results: dict[str, list[dict[str, float]]]) -> None:
    columns = ("total", *STEPS, "answered", "warm", "interp+import")
    print(f"\nmedians over {len(results['rouse'])} rounds (seconds):")
    print(f"  {'':8}" + "".join(f"{c:>14}" for c in columns))
    for kind, rounds in results.items():
        cells = []
        for column in columns:
            cells.append(f"{statistics.median(r[column] for r in rounds):14.3f}")
        print(f"  {kind:8}" + "".join(cells))
    rouse = [r["total"] for r in results["rouse"]]
    plain = [r["total"] for r in results["plain"]]
    start_to_ready = [r["ready"] for r in results["rouse"]]
    print(
        "  skill pod, containers running -> Ready (median): "
        f"{statistics.median(start_to_ready):.3f} s; the runtime's own process start -> ready: "
        f"{statistics.median(r['interp+import'] for r in results['rouse']):.3f} s"
    )
    print(f"  every round, rouse: {[round(x, 3) for x in rouse]}")
    print(f"  every round, plain: {[round(x, 3) for x in plain]}")
    print(
        f"cold start, event -> reply through the broker vs plain Deployment 0 -> 1 (medians): "
        f"{statistics.median(rouse):.3f} s vs {statistics.median(plain):.3f} s, "
        f"ratio {statistics.median(rouse) / statistics.median(plain):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    running = start_node()
    try:
        config.load_kube_config(config_file=str(running.kubeconfig))  # type: ignore[no-untyped-call]
        namespace = setup(running)
        pods = PodWatch(namespace)
        results: dict[str, list[dict[str, float]]] = {"rouse": [], "plain": []}
        with quick_scale_to_zero(running), PortForward(running, namespace, "probe") as probe:
            wait_until(lambda: call(probe, "/").get("ok") is True, timeout=30, what="the probe")
            for index in range(args.rounds):
                for kind in ("rouse", "plain"):
                    result = one_round(running, namespace, pods, probe, kind, index)
                    results[kind].append(result)
                    rounded = {k: round(v, 3) for k, v in result.items()}
                    print(f"round {index} {kind}: {json.dumps(rounded)}", flush=True)
        report(results)
    finally:
        stop_node(running)


if __name__ == "__main__":
    main()
