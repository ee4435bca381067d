"""The Helm chart against the real control plane (kube-apiserver + etcd + controller-manager).

- every object the chart renders (every optional part on; the state store URL from a Secret)
  passes `kubectl apply --dry-run=server`;
- `helm install` into the control plane, then the operator runs with the chart's own command
  line and the chart's ServiceAccount identity (a token from `kubectl create token`) and
  reconciles an example Agent without one RBAC denial;
- `kubectl auth can-i --as=<that ServiceAccount>` shows what it may not do;
- a namespace enforcing the restricted Pod Security Standard admits a Pod carrying the pod
  spec of the operator's generated Knative Service and refuses a non-compliant one.

The envtest control plane runs no kubelet, so pods are never started here: the kind path
(hack/kind/e2e.sh) is where images really run.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rouse_testing.cluster import Cluster
from rouse_testing.wait import free_port, require_tool, wait_until

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rouse"
EXAMPLE = REPO / "examples" / "hello" / "agent.yaml"
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
ALL_OPTIONAL = [
    "monitoring.podMonitor.enabled=true",
    "monitoring.serviceMonitor.enabled=true",
    "redis.persistence.enabled=true",
    "operator.verbose=true",
]


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = cluster.bin_dir / "helm"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run `make envtest`")
    proc = subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        env=cluster.env,
        timeout=180,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def render(cluster: Cluster, release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"][
        "gitVersion"
    ]
    argv = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", server]
    for value in sets:
        argv += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(cluster, *argv).stdout) if d]


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl(*args, "-o", "json").stdout)
    return result


def monitoring_crds(workdir: Path) -> list[Path]:
    """PodMonitor/ServiceMonitor CRDs from the pinned prometheus-operator Go module."""
    go = require_tool("go", "install Go >= 1.26 (`make envtest` needs it too)")
    proc = subprocess.run(
        [go, "mod", "download", "-json", PROMETHEUS_OPERATOR],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=workdir,  # outside any module: nothing's go.mod or go.sum changes
    )
    if proc.returncode != 0:
        pytest.fail(f"go mod download {PROMETHEUS_OPERATOR} failed:\n{proc.stdout}{proc.stderr}")
    crd_dir = Path(json.loads(proc.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    files = [
        crd_dir / f"monitoring.coreos.com_{kind}.yaml"
        for kind in ("podmonitors", "servicemonitors")
    ]
    for path in files:
        if not path.exists():
            pytest.fail(f"{path} is missing from the module download")
    return files


def ensure_monitoring_crds(cluster: Cluster, workdir: Path) -> None:
    """PodMonitor and ServiceMonitor must be served for their objects to pass a dry run."""
    for path in monitoring_crds(workdir):
        cluster.kubectl(
            "apply", "--server-side", "--field-manager=rouse-chart-test", "-f", str(path)
        )
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/podmonitors.monitoring.coreos.com", "crd/servicemonitors.monitoring.coreos.com",
    )  # fmt: skip


def adopt_agent_crd(cluster: Cluster, release: str, namespace: str) -> None:
    """Let this release own agents.rouse.dev if other tests installed it without Helm.

    The same step a user takes to hand an existing CRD to Helm (Helm adopts objects that
    carry its release annotations).
    """
    found = cluster.kubectl("get", "crd", "agents.rouse.dev", "--ignore-not-found", "-o", "name")
    if not found.stdout.strip():
        return
    cluster.kubectl(
        "annotate", "--overwrite", "crd", "agents.rouse.dev",
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip
    cluster.kubectl(
        "label", "--overwrite", "crd", "agents.rouse.dev", "app.kubernetes.io/managed-by=Helm"
    )


# ---------------------------------------------------------------- server-side dry run


def test_every_rendered_object_is_accepted_by_the_api_server(
    cluster: Cluster, tmp_path: Path
) -> None:
    release = f"dry-{uuid.uuid4().hex[:6]}"
    namespace = f"rouse-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        ensure_monitoring_crds(cluster, tmp_path)
        by_secret = ["stateStore.existingSecret=rouse-state", "redis.enabled=false"]
        for values in ([], ALL_OPTIONAL, by_secret):
            objects = render(cluster, release, namespace, *values)
            kinds = {o["kind"] for o in objects}
            if values == ALL_OPTIONAL:
                assert {"PodMonitor", "ServiceMonitor", "PersistentVolumeClaim"} <= kinds
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
            proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
            assert proc.returncode == 0, f"the API server refused a rendered object:\n{proc.stderr}"
            accepted = [line for line in proc.stdout.splitlines() if "(server dry run)" in line]
            assert len(accepted) == len(objects), proc.stdout
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


# ---------------------------------------------------------------- install and run as the SA


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Iterator[dict[str, str]]:
    """`helm install` of the chart (defaults) into its own namespace; uninstalled afterwards."""
    release = f"rouse-{uuid.uuid4().hex[:6]}"
    namespace = f"{release}-system"
    cluster.kubectl("create", "namespace", namespace)
    adopt_agent_crd(cluster, release, namespace)
    helm(cluster, "install", release, str(CHART), "--namespace", namespace)
    try:
        yield {"release": release, "namespace": namespace, "sa": release}
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_helm_install_creates_the_release(cluster: Cluster, installed: dict[str, str]) -> None:
    status = json.loads(
        helm(
            cluster, "status", installed["release"], "-n", installed["namespace"], "-o", "json"
        ).stdout
    )
    assert status["info"]["status"] == "deployed"
    assert "kubectl explain agent.spec.skills" in status["info"]["notes"]
    release, namespace = installed["release"], installed["namespace"]
    for kind, name in [
        ("deployment", f"{release}-operator"),
        ("deployment", f"{release}-parking"),
        ("service", f"{release}-parking"),
        ("deployment", f"{release}-redis"),
        ("configmap", f"{release}-config"),
        ("serviceaccount", release),
    ]:
        cluster.kubectl("get", "-n", namespace, kind, name)
    crd = kubectl_json(cluster, "get", "crd", "agents.rouse.dev")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cluster.kubectl("get", "clusterrole", f"{release}-operator")


def test_upgrade_updates_and_uninstall_keeps_the_crd_and_the_agents(
    cluster: Cluster, installed: dict[str, str], namespace: str
) -> None:
    """A second release takes the CRD over, upgrades, uninstalls: CRD and Agents stay."""
    release = f"keep-{uuid.uuid4().hex[:6]}"
    release_ns = f"{release}-system"
    cluster.kubectl("create", "namespace", release_ns)
    try:
        adopt_agent_crd(cluster, release, release_ns)
        helm(cluster, "install", release, str(CHART), "--namespace", release_ns)
        agent = yaml.safe_load(EXAMPLE.read_text())
        cluster.apply([agent], namespace=namespace)

        def credentials() -> tuple[dict[str, str], str]:
            redis = kubectl_json(
                cluster, "get", "secret", f"{release}-rouse-redis", "-n", release_ns
            )
            token = kubectl_json(
                cluster, "get", "secret", f"{release}-rouse-parking-token", "-n", release_ns
            )
            return redis["data"], token["data"]["token"]

        generated = credentials()
        # an upgrade re-applies the CRD (a template, not crds/): a label change shows it
        helm(
            cluster, "upgrade", release, str(CHART), "--namespace", release_ns,
            "--set", "commonLabels.rouse-test=upgraded",
        )  # fmt: skip
        crd = kubectl_json(cluster, "get", "crd", "agents.rouse.dev")
        assert crd["metadata"]["labels"]["rouse-test"] == "upgraded"
        # the generated Redis password and parking token survive the upgrade (helm lookup)
        assert credentials() == generated
        copy = kubectl_json(cluster, "get", "secret", f"{release}-rouse-redis", "-n", "default")
        assert set(generated[0]) == {"password", "url", "skill-password", "skill-url"}
        assert copy["data"] == {"skill-url": generated[0]["skill-url"]}
        helm(cluster, "uninstall", release, "--namespace", release_ns)
        assert not cluster.kubectl(
            "get", "deployment", f"{release}-operator", "-n", release_ns, "--ignore-not-found",
            "-o", "name",
        ).stdout.strip(), "helm uninstall left the operator behind"  # fmt: skip
        crd = kubectl_json(cluster, "get", "crd", "agents.rouse.dev")
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        cluster.kubectl("get", "agent", agent["metadata"]["name"], "-n", namespace)
    finally:
        helm(cluster, "uninstall", release, "--namespace", release_ns, check=False)
        cluster.kubectl("delete", "namespace", release_ns, "--wait=false", check=False)


def sa_kubeconfig(cluster: Cluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token)."""
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    cluster_entry = copy.deepcopy(server["cluster"])
    if "certificate-authority" in cluster_entry:
        ca = Path(cluster_entry.pop("certificate-authority"))
        if not ca.is_absolute():
            ca = cluster.kubeconfig.parent / ca
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": cluster_entry}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "envtest", "user": sa}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def chart_operator_command(
    cluster: Cluster, installed: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The operator container's command line and env (ConfigMap + its own), from the release."""
    deployment = kubectl_json(
        cluster,
        "get",
        "deployment",
        f"{installed['release']}-operator",
        "-n",
        installed["namespace"],
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config = kubectl_json(
        cluster, "get", "configmap", f"{installed['release']}-config", "-n", installed["namespace"]
    )
    env = dict(config["data"])
    fields = {"metadata.namespace": installed["namespace"], "metadata.name": "operator-0"}
    for var in container.get("env", []):  # values, downward API and Secrets, as kubelet would
        ref = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        secret = var.get("valueFrom", {}).get("secretKeyRef")
        if secret is not None:
            obj = kubectl_json(
                cluster, "get", "secret", secret["name"], "-n", installed["namespace"]
            )
            env[var["name"]] = base64.b64decode(obj["data"][secret["key"]]).decode()
        else:
            env[var["name"]] = fields[ref] if ref else var["value"]
    return list(container["command"]) + list(container.get("args", [])), env


def test_operator_with_the_chart_identity_reconciles_without_rbac_denial(
    cluster: Cluster, installed: dict[str, str], namespace: str, tmp_path: Path
) -> None:
    kubeconfig = sa_kubeconfig(
        cluster, installed["namespace"], installed["sa"], tmp_path / "sa.kubeconfig"
    )
    command, settings = chart_operator_command(cluster, installed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(settings)
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "ROUSE_METRICS_PORT": str(free_port()),
            # nothing listens there: the policy timers run, find Prometheus unreachable and
            # say so in the Agent's status (a status patch and an Event, as the SA)
            "ROUSE_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
            "ROUSE_EVAL_INTERVAL": "1",
            # as in the image: `python` is the one with rouse_operator installed
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        # examples/hello plus a scheduled skill: every child kind the operator writes
        agent = yaml.safe_load(EXAMPLE.read_text())
        name = agent["metadata"]["name"]
        agent["spec"]["skills"].append(
            {
                "name": "tick",
                "handler": "hello.skills:greet",
                "schedule": {"cron": "*/5 * * * *", "data": {"name": "cron"}},
            }
        )
        cluster.apply([agent], namespace=namespace)

        def names(kind: str) -> set[str]:
            out = cluster.kubectl(
                "get", kind, "-n", namespace, "-l", f"rouse.dev/agent={name}", "-o", "name"
            ).stdout
            return {line.split("/", 1)[1] for line in out.split()}

        children = {
            "ksvc": {f"{name}-greet", f"{name}-tick"},
            "triggers": {f"{name}-greet-0", f"{name}-tick-cron"},  # the schedule's ticks too
            "pingsources": {f"{name}-tick-cron"},
        }
        for kind, expected in children.items():
            wait_until(
                lambda kind=kind, expected=expected: names(kind) == expected,
                timeout=90, what=f"{kind} {sorted(expected)} made by the operator",
            )  # fmt: skip
        made = kubectl_json(cluster, "get", "ksvc", f"{name}-greet", "-n", namespace)
        assert made["metadata"]["ownerReferences"][0]["kind"] == "Agent"
        # it leads through the chart's leader Lease, in the release namespace (the Role's)
        lease_args = (
            "get",
            "lease",
            f"{installed['release']}-operator",
            "-n",
            installed["namespace"],
        )
        lease = kubectl_json(cluster, *lease_args)
        assert lease["spec"]["holderIdentity"] == f"operator-0_{proc.pid}"

        def status_written() -> dict[str, Any] | None:
            got = kubectl_json(cluster, "get", "agent", name, "-n", namespace)
            status: dict[str, Any] = got.get("status") or {}
            return status if status.get("observedGeneration") else None

        status = wait_until(
            status_written, timeout=60, what="the Agent's status written by the operator"
        )
        assert status.get("phase"), status

        def policy_condition() -> bool:
            got = kubectl_json(cluster, "get", "agent", name, "-n", namespace)
            types = {c["type"] for c in (got.get("status") or {}).get("conditions") or []}
            return "WithinBudget" in types

        wait_until(policy_condition, timeout=60, what="the policy timers' WithinBudget condition")

        def agent_events() -> str:
            return cluster.kubectl(
                "get", "events", "-n", namespace, "-o", "name",
                f"--field-selector=involvedObject.kind=Agent,involvedObject.name={name}",
            ).stdout.strip()  # fmt: skip

        # a skill taken out of the spec: the operator deletes its Service, PingSource and Trigger
        cluster.kubectl(
            "patch", "agent", name, "-n", namespace, "--type=json",
            "-p", '[{"op": "remove", "path": "/spec/skills/1"}]',
        )  # fmt: skip
        wait_until(
            lambda: names("ksvc") == {f"{name}-greet"} and not names("pingsources")
            and names("triggers") == {f"{name}-greet-0"},
            timeout=90, what="the removed skill's Service, PingSource and Trigger deleted",
        )  # fmt: skip
        # ...and says so in an Event (a new Agent's first children are none: README)
        wait_until(agent_events, timeout=60, what="Kubernetes Events posted on the Agent")

        assert proc.poll() is None, f"the operator exited:\n{log_path.read_text()}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Checked even when a wait above failed: a denial is the likeliest reason.
        denials = rbac_denials(log_path.read_text())
        if denials:
            pytest.fail("RBAC denials in the operator log:\n" + "\n".join(denials))
    # stopped cleanly, it released the Lease (update, as the ServiceAccount)
    assert kubectl_json(cluster, *lease_args)["spec"].get("holderIdentity", "") == ""


def rbac_denials(log_text: str) -> list[str]:
    """Log lines where authorization refused the operator.

    RBAC words it "User ... cannot <verb> resource ..."; kopf says "Not enough permissions";
    a bad token is "Unauthorized". Other 403s (a namespace being deleted by another test
    while the cluster-wide operator reconciles an Agent in it) are not denials.
    """
    markers = ("not enough permissions", "unauthorized", " 401")
    found = []
    for line in log_text.splitlines():
        low = line.lower()
        if ("cannot " in low and " resource " in low) or any(m in low for m in markers):
            found.append(line)
    return found


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("get", "secrets", False),
        ("list", "secrets", False),
        ("delete", "namespaces", False),
        ("create", "pods", False),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", False),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", False),
        ("delete", "agents.rouse.dev", False),
        ("update", "configmaps", False),
        ("patch", "agents.rouse.dev", True),
        ("patch", "agents.rouse.dev/status", True),
        ("update", "agents.rouse.dev/finalizers", True),
        ("update", "agents.rouse.dev", False),
        ("create", "services.serving.knative.dev", True),
        ("delete", "triggers.eventing.knative.dev", True),
        ("get", "brokers.eventing.knative.dev", True),
        ("create", "pingsources.sources.knative.dev", True),
        ("create", "events", True),
        ("patch", "revisions.serving.knative.dev", True),  # the warm floor (floor.py)
        ("create", "revisions.serving.knative.dev", False),
        ("delete", "revisions.serving.knative.dev", False),
        ("patch", "podautoscalers.autoscaling.internal.knative.dev", False),
        ("create", "leases.coordination.k8s.io", False),  # only in the release namespace
        ("update", "leases.coordination.k8s.io", False),
    ],
)
def test_service_account_permissions(
    cluster: Cluster, installed: dict[str, str], verb: str, resource: str, allowed: bool
) -> None:
    user = f"system:serviceaccount:{installed['namespace']}:{installed['sa']}"
    for scope in (["-n", "default"], ["--all-namespaces"]):
        if "/" in resource:  # agents.rouse.dev/status: a subresource
            kind, subresource = resource.split("/")
            args = [verb, kind, f"--subresource={subresource}", *scope]
        else:
            args = [verb, resource, *scope]
        proc = cluster.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
        answer = proc.stdout.strip()
        assert answer == ("yes" if allowed else "no"), (
            f"can-i {verb} {resource} {scope}: {answer!r} {proc.stderr}"
        )


@pytest.mark.parametrize(
    ("verb", "lease", "allowed"),
    [
        ("create", "", True),
        ("get", "{release}-operator", True),
        ("update", "{release}-operator", True),
        ("update", "someone-elses-lease", False),
        ("delete", "{release}-operator", False),
        ("list", "", False),
    ],
)
def test_service_account_leader_lease_permissions(
    cluster: Cluster, installed: dict[str, str], verb: str, lease: str, allowed: bool
) -> None:
    """Leases only in the release namespace, and get/update only of the chart's own Lease."""
    user = f"system:serviceaccount:{installed['namespace']}:{installed['sa']}"
    resource = "leases.coordination.k8s.io"
    target = f"{resource}/{lease.format(release=installed['release'])}" if lease else resource
    for namespace, expected in ((installed["namespace"], allowed), ("default", False)):
        proc = cluster.kubectl(
            "auth", "can-i", verb, target, "-n", namespace, f"--as={user}", check=False
        )
        answer = proc.stdout.strip()
        assert answer == ("yes" if expected else "no"), (
            f"can-i {verb} {target} -n {namespace}: {answer!r} {proc.stderr}"
        )


# ---------------------------------------------------------------- Pod Security "restricted"


def generated_pod_spec(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """The pod spec of the Knative Service the operator's builder makes for the example agent.

    The Agent goes through the API server first (so it carries the CRD's defaults and a uid,
    as the operator sees it); Knative-only fields of the revision spec are dropped and the
    readiness probe gets the port Knative's defaulting gives it.
    """
    from rouse_operator.resources import children
    from rouse_operator.settings import Settings

    agent = yaml.safe_load(EXAMPLE.read_text())
    agent["metadata"]["name"] = f"psa-{uuid.uuid4().hex[:6]}"
    cluster.apply([agent], namespace=namespace)
    stored = kubectl_json(cluster, "get", "agent", agent["metadata"]["name"], "-n", namespace)
    manifests = children.desired(stored, Settings())
    (service, *_) = [m for m in manifests if m["kind"] == "Service"]
    spec: dict[str, Any] = copy.deepcopy(service["spec"]["template"]["spec"])
    for knative_only in (
        "containerConcurrency",
        "timeoutSeconds",
        "responseStartTimeoutSeconds",
        "idleTimeoutSeconds",
    ):
        spec.pop(knative_only, None)
    for container in spec["containers"]:
        probe = container.get("readinessProbe", {}).get("httpGet")
        if probe is not None and "port" not in probe:
            probe["port"] = container["ports"][0]["containerPort"]
    return spec


def wait_for_default_service_account(cluster: Cluster, namespace: str) -> None:
    """The controller-manager creates `default` shortly after the namespace; pods need it."""
    wait_until(
        lambda: cluster.kubectl(
            "get", "serviceaccount", "default", "-n", namespace, "--ignore-not-found", "-o", "name"
        ).stdout.strip(),
        timeout=30, what=f"the default ServiceAccount of {namespace}",
    )  # fmt: skip


def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_restricted_namespace_admits_the_generated_pod_and_refuses_a_bad_one(
    cluster: Cluster, installed: dict[str, str], namespace: str
) -> None:
    # `installed` put the Agent CRD in place (the chart's crds.enabled).
    cluster.kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    spec = generated_pod_spec(cluster, namespace)
    wait_for_default_service_account(cluster, namespace)

    def dry_run(manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "name",
            input=json.dumps(manifest), check=False,
        )  # fmt: skip

    admitted = dry_run(pod("skill", spec))
    assert admitted.returncode == 0, (
        f"restricted namespace refused the generated pod:\n{admitted.stderr}"
    )
    assert "warning" not in admitted.stderr.lower(), admitted.stderr

    bad = copy.deepcopy(spec)
    for container in bad["containers"]:
        container["securityContext"] = {"allowPrivilegeEscalation": True, "runAsUser": 0}
    refused = dry_run(pod("skill-bad", bad))
    assert refused.returncode != 0, "a privilege-escalating root pod was admitted"
    assert "violates PodSecurity" in refused.stderr and '"restricted:latest"' in refused.stderr, (
        refused.stderr
    )


def test_restricted_namespace_admits_the_chart_pods(cluster: Cluster, namespace: str) -> None:
    """The operator, parking and Redis pods pass the restricted profile too (deploy.sh enforces it)."""
    cluster.kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    objects = render(cluster, "psa", namespace, *ALL_OPTIONAL)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "psa-rouse-operator",
        "psa-rouse-parking",
        "psa-rouse-redis",
    }
    # the ServiceAccounts the pods name must exist for admission to get to Pod Security
    cluster.apply([o for o in objects if o["kind"] == "ServiceAccount"], namespace=namespace)
    wait_for_default_service_account(cluster, namespace)
    for deployment in deployments:
        manifest = pod(deployment["metadata"]["name"], deployment["spec"]["template"]["spec"])
        proc = cluster.kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "name",
            input=json.dumps(manifest), check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"{deployment['metadata']['name']} refused:\n{proc.stderr}"
        assert "warning" not in proc.stderr.lower(), proc.stderr
