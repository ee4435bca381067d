"""The Helm chart and the kind path, checked without a cluster.

Real tools, no mocks: shellcheck on every shell script of the repository, `helm lint`
and `helm template` (the pinned helm built by `make envtest`), `make -n` of the kind
targets, and each hack/kind script's own argument checks (they run before any tool
is needed, so they work on a machine without Docker).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from rouse_testing.helm import KUBE_VERSION, helm_bin

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rouse"
KIND_SCRIPTS = sorted((REPO / "hack" / "kind").glob("*.sh"))
RUNNABLE_SCRIPTS = [p for p in KIND_SCRIPTS if p.name != "lib.sh"]
SKIP_DIRS = {".git", ".venv", ".cache", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}

RELEASE = "rouse"
NAMESPACE = "rouse-system"
# Every optional part switched on (and the choices that change rendered objects).
ALL_OPTIONAL = [
    "monitoring.podMonitor.enabled=true",
    "monitoring.serviceMonitor.enabled=true",
    "redis.persistence.enabled=true",
    "operator.verbose=true",
]


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def helm_template(*sets: str) -> list[dict[str, Any]]:
    """Render the chart (templates only) and return its objects."""
    argv = [helm_bin(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    argv += ["--kube-version", KUBE_VERSION]
    for value in sets:
        argv += ["--set", value]
    proc = run(argv)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def shell_scripts() -> list[Path]:
    """Every shell script in the repository: *.sh, or a file with a sh/bash shebang."""
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".sh"):
                found.append(path)
                continue
            try:
                with path.open("rb") as fh:
                    first = fh.readline(80)
            except OSError:
                continue
            if first.startswith((b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env bash")):
                found.append(path)
    return sorted(found)


# ---------------------------------------------------------------- shell scripts


def test_every_shell_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: run `make system-deps`")
    scripts = shell_scripts()
    assert set(KIND_SCRIPTS) <= set(scripts), "the kind scripts must be among the checked ones"
    proc = run([shellcheck, "-x", *map(str, scripts)], cwd=REPO)
    assert proc.returncode == 0, f"shellcheck:\n{proc.stdout}{proc.stderr}"


def test_kind_scripts_are_strict_and_executable() -> None:
    assert {p.name for p in RUNNABLE_SCRIPTS} == {
        "kind-up.sh",
        "knative.sh",
        "images.sh",
        "deploy.sh",
        "example.sh",
        "e2e.sh",
        "kind-down.sh",
    }
    for script in RUNNABLE_SCRIPTS:
        text = script.read_text()
        assert "set -euo pipefail" in text, f"{script.name} lacks set -euo pipefail"
        assert os.access(script, os.X_OK), f"{script.name} is not executable"


@pytest.mark.parametrize("script", RUNNABLE_SCRIPTS, ids=lambda p: p.name)
def test_script_help(script: Path) -> None:
    proc = run([str(script), "--help"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: {script.name}"), proc.stdout
    assert "Needs:" in proc.stdout


@pytest.mark.parametrize("script", RUNNABLE_SCRIPTS, ids=lambda p: p.name)
def test_script_refuses_unknown_argument(script: Path) -> None:
    proc = run([str(script), "--bogus"])
    assert proc.returncode == 2
    assert "unknown argument: --bogus" in proc.stderr
    assert "Usage:" in proc.stderr


@pytest.mark.parametrize("script", RUNNABLE_SCRIPTS, ids=lambda p: p.name)
def test_script_option_without_value(script: Path) -> None:
    proc = run([str(script), "--name"])
    assert proc.returncode == 2
    assert "option --name needs a value" in proc.stderr


@pytest.mark.parametrize("script", RUNNABLE_SCRIPTS, ids=lambda p: p.name)
def test_script_refuses_bad_cluster_name(script: Path) -> None:
    proc = run([str(script), "--name", "Not_A_Name"])
    assert proc.returncode == 2
    assert "cluster name 'Not_A_Name' is not a DNS-1123 label" in proc.stderr


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("knative.sh", ["--version", "v1.23.0"], "is not a Knative release tag"),
        ("images.sh", ["--tag", "bad tag"], "is not a valid image tag"),
        ("deploy.sh", ["--namespace", "Bad"], "namespace 'Bad' is not a DNS-1123 label"),
        ("deploy.sh", ["--release", "-x"], "release '-x' is not a DNS-1123 label"),
        ("example.sh", ["--agent", "nope"], "unknown agent 'nope'"),
        ("example.sh", ["--timeout", "0"], "is not a positive number of seconds"),
    ],
)
def test_script_specific_argument_checks(script: str, args: list[str], message: str) -> None:
    proc = run([str(REPO / "hack" / "kind" / script), *args])
    assert proc.returncode == 2
    assert message in proc.stderr


# With valid arguments each script first checks its tools; on a PATH without them it stops
# there, naming the first missing one (nothing else runs, so this is safe anywhere).
FIRST_MISSING_TOOL = {
    "kind-up.sh": "docker",
    "knative.sh": "kubectl",
    "images.sh": "docker",
    "deploy.sh": "helm",
    "example.sh": "kubectl",
    "e2e.sh": "docker",
    "kind-down.sh": "kind",
}


@pytest.mark.parametrize("script", RUNNABLE_SCRIPTS, ids=lambda p: p.name)
def test_script_names_a_missing_tool(script: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "basename"):
        found = shutil.which(tool)
        assert found is not None, f"{tool} is needed to run the scripts"
        (bin_dir / tool).symlink_to(found)
    proc = run([str(script)], env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    tool = FIRST_MISSING_TOOL[script.name]
    assert proc.returncode == 1, proc.stderr
    assert f"error: '{tool}' is not installed" in proc.stderr, proc.stderr


def test_knative_pin_matches_the_validated_modules() -> None:
    """knative-vX.Y.Z in the scripts must be the release of the Go modules envtest validates with."""
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "hack" / "envtest" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    module_minor = int(versions["KNATIVE_SERVING_VERSION"].split(".")[1])
    lib = (REPO / "hack" / "kind" / "lib.sh").read_text()
    assert f"knative-v1.{module_minor - 27}.0" in lib


def test_make_dry_run_of_the_kind_targets() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed")
    proc = run(
        [
            make,
            "-n",
            "--no-print-directory",
            "kind-up",
            "knative",
            "images",
            "deploy",
            "example",
            "e2e",
            "kind-down",
        ],
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "hack/kind/kind-up.sh --name rouse",
        "hack/kind/knative.sh --name rouse",
        "hack/kind/images.sh --name rouse",
        "cp crds/agent.yaml charts/rouse/files/agent.yaml",
        "hack/kind/deploy.sh --namespace rouse-system",
        "hack/kind/example.sh --agent hello",
        "hack/kind/e2e.sh",
        "hack/kind/kind-down.sh --name rouse",
    ]
    for line in proc.stdout.splitlines():
        if line.startswith("hack/"):
            assert (REPO / line.split()[0]).exists(), line


def test_make_dry_run_of_helm_lint() -> None:
    proc = run(["make", "-n", "--no-print-directory", "helm-lint", "HELM=helm"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "cp crds/agent.yaml charts/rouse/files/agent.yaml"
    assert lines[1] == "helm lint --strict charts/rouse"
    assert lines[2].startswith(
        "helm lint --strict charts/rouse --set monitoring.podMonitor.enabled=true"
    )


# ---------------------------------------------------------------- the chart


def test_chart_crd_copy_is_identical_to_the_source() -> None:
    source = REPO / "crds" / "agent.yaml"
    copy = CHART / "files" / "agent.yaml"
    assert source.exists(), "crds/agent.yaml is missing"
    assert copy.read_bytes() == source.read_bytes(), (
        "charts/rouse/files/agent.yaml differs from crds/agent.yaml: run `make chart-crd`"
    )


@pytest.mark.parametrize("values", [[], ALL_OPTIONAL], ids=["default", "all-optional"])
def test_helm_lint(values: list[str]) -> None:
    argv = [helm_bin(), "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    for value in values:
        argv += ["--set", value]
    proc = run(argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_default_render_objects() -> None:
    rendered = helm_template()
    # The chart Redis's URL Secret is copied into the Agents' namespaces (redis.agentNamespaces).
    copies = [o for o in rendered if o["metadata"].get("namespace") == "default"]
    assert [(o["kind"], o["metadata"]["name"]) for o in copies] == [("Secret", "rouse-redis")]
    objects = by_kind_name([o for o in rendered if o not in copies])
    assert set(objects) == {
        ("Secret", "rouse-parking-token"),
        ("Secret", "rouse-redis"),
        ("CustomResourceDefinition", "agents.rouse.dev"),
        ("ServiceAccount", "rouse"),
        ("ClusterRole", "rouse-operator"),
        ("ClusterRoleBinding", "rouse-operator"),
        ("Role", "rouse-operator-leader-election"),
        ("RoleBinding", "rouse-operator-leader-election"),
        ("ConfigMap", "rouse-config"),
        ("Deployment", "rouse-operator"),
        ("Deployment", "rouse-parking"),
        ("Service", "rouse-parking"),
        ("Deployment", "rouse-redis"),
        ("Service", "rouse-redis"),
    }
    cluster_scoped = {
        "CustomResourceDefinition",
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    for (kind, _), obj in objects.items():
        if kind not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_all_optional_render_objects() -> None:
    objects = by_kind_name(helm_template(*ALL_OPTIONAL))
    extra = {
        ("PodMonitor", "rouse-skills"),
        ("ServiceMonitor", "rouse-operator"),
        ("ServiceMonitor", "rouse-parking"),
        ("Service", "rouse-operator-metrics"),
        ("PersistentVolumeClaim", "rouse-redis"),
    }
    assert extra <= set(objects)
    assert objects[("PodMonitor", "rouse-skills")]["spec"] == {
        "namespaceSelector": {"any": True},
        "selector": {"matchLabels": {"app.kubernetes.io/managed-by": "rouse"}},
        "podMetricsEndpoints": [{"port": "user-port", "path": "/metrics", "interval": "15s"}],
    }
    assert objects[("ServiceMonitor", "rouse-parking")]["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "honorLabels": True, "interval": "30s"}
    ]
    (operator,) = objects[("Deployment", "rouse-operator")]["spec"]["template"]["spec"][
        "containers"
    ]
    assert operator["args"] == ["--all-namespaces", "--leader-elect", "--verbose"]
    redis = objects[("Deployment", "rouse-redis")]["spec"]["template"]["spec"]
    assert redis["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "rouse-redis"}}
    ]


def test_crd_is_the_source_crd_with_keep_policy() -> None:
    objects = by_kind_name(helm_template())
    rendered = objects[("CustomResourceDefinition", "agents.rouse.dev")]
    source = yaml.safe_load((REPO / "crds" / "agent.yaml").read_text())
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert rendered["spec"] == source["spec"]
    assert "CustomResourceDefinition" not in {
        o["kind"] for o in helm_template("crds.enabled=false")
    }
    no_keep = by_kind_name(helm_template("crds.keep=false"))
    annotations = no_keep[("CustomResourceDefinition", "agents.rouse.dev")]["metadata"]
    assert "helm.sh/resource-policy" not in (annotations.get("annotations") or {})


def test_cluster_role_lists_exactly_what_the_operator_uses() -> None:
    role = by_kind_name(helm_template())[("ClusterRole", "rouse-operator")]
    crud = ["get", "list", "watch", "create", "patch", "delete"]
    assert role["rules"] == [
        {
            "apiGroups": ["rouse.dev"],
            "resources": ["agents"],
            "verbs": ["get", "list", "watch", "patch"],
        },
        {"apiGroups": ["rouse.dev"], "resources": ["agents/status"], "verbs": ["get", "patch"]},
        {"apiGroups": ["rouse.dev"], "resources": ["agents/finalizers"], "verbs": ["update"]},
        {"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": crud},
        {"apiGroups": ["eventing.knative.dev"], "resources": ["triggers"], "verbs": crud},
        {"apiGroups": ["sources.knative.dev"], "resources": ["pingsources"], "verbs": crud},
        {"apiGroups": ["eventing.knative.dev"], "resources": ["brokers"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
    ]
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {rule}"


def test_settings_contract_in_the_config_map() -> None:
    config = by_kind_name(helm_template())[("ConfigMap", "rouse-config")]
    assert config["data"] == {
        "ROUSE_BROKER_INGRESS": "http://broker-ingress.knative-eventing.svc.cluster.local",
        "ROUSE_PARKING_URL": "http://rouse-parking.rouse-system.svc.cluster.local",
        # the chart's Redis has a generated password: its URL is in a Secret, by reference
        "ROUSE_STATE_URL_SECRET": "rouse-redis:url",
        "ROUSE_PROMETHEUS_URL": "http://prometheus-operated.monitoring.svc:9090",
        "ROUSE_EVAL_INTERVAL": "60",
        "ROUSE_METRICS_PORT": "8080",
    }
    external = by_kind_name(
        helm_template(
            "redis.enabled=false",
            "settings.stateUrl=redis://redis.example:6379/2",
            "parking.service.port=8081",
        )
    )
    data = external[("ConfigMap", "rouse-config")]["data"]
    assert data["ROUSE_STATE_URL"] == "redis://redis.example:6379/2"
    assert data["ROUSE_PARKING_URL"] == "http://rouse-parking.rouse-system.svc.cluster.local:8081"
    assert ("Deployment", "rouse-redis") not in external


def test_state_url_by_reference_from_an_existing_secret() -> None:
    """stateStore.existingSecret: no URL in the ConfigMap; operator and parking read it with
    a secretKeyRef; the operator is told which Secret skills read (in the Agent's namespace)."""
    objects = by_kind_name(
        helm_template("stateStore.existingSecret=rouse-state", "stateStore.secretKey=redis-url")
    )
    data = objects[("ConfigMap", "rouse-config")]["data"]
    assert "ROUSE_STATE_URL" not in data
    assert data["ROUSE_STATE_URL_SECRET"] == "rouse-state:redis-url"
    by_ref = {
        "name": "ROUSE_STATE_URL",
        "valueFrom": {"secretKeyRef": {"name": "rouse-state", "key": "redis-url"}},
    }
    for name in ("rouse-operator", "rouse-parking"):
        (container,) = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "rouse-config"}}]
        assert container["env"][-2] == by_ref, name  # then the parking token
    assert "redis://" not in yaml.safe_dump_all(
        [o for o in objects.values() if o["kind"] != "CustomResourceDefinition"]
    )
    # a plain settings.stateUrl (no password) stays a plain URL, no Secret named
    plain = by_kind_name(
        helm_template("redis.enabled=false", "settings.stateUrl=redis://redis.example:6379/2")
    )
    for name in ("rouse-operator", "rouse-parking"):
        (container,) = plain[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        assert all(e["name"] != "ROUSE_STATE_URL" for e in container["env"]), name
    assert "ROUSE_STATE_URL_SECRET" not in plain[("ConfigMap", "rouse-config")]["data"]
    assert ("Secret", "rouse-redis") not in plain


def test_chart_redis_has_a_generated_password_used_by_reference() -> None:
    """The chart's Redis requires a password generated into a Secret; every user reads it by
    secretKeyRef; no object but that Secret holds it. drop/replay need a generated token."""
    import base64
    import re

    rendered = helm_template()
    secrets = [o for o in rendered if o["kind"] == "Secret"]
    redis_secret = next(
        o for o in secrets
        if o["metadata"]["name"] == "rouse-redis" and o["metadata"]["namespace"] == NAMESPACE
    )  # fmt: skip
    password = base64.b64decode(redis_secret["data"]["password"]).decode()
    url = base64.b64decode(redis_secret["data"]["url"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert url == f"redis://:{password}@rouse-redis.rouse-system.svc.cluster.local:6379/0"
    copy = next(o for o in secrets if o["metadata"]["namespace"] == "default")
    assert copy["data"] == {"url": redis_secret["data"]["url"]}  # no bare password there
    objects = by_kind_name([o for o in rendered if o["kind"] != "Secret"])
    (redis,) = objects[("Deployment", "rouse-redis")]["spec"]["template"]["spec"]["containers"]
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    ref = {"secretKeyRef": {"name": "rouse-redis", "key": "password"}}
    assert {e["name"]: e["valueFrom"] for e in redis["env"]} == {
        "REDIS_PASSWORD": ref,
        "REDISCLI_AUTH": ref,
    }
    token = next(o for o in secrets if o["metadata"]["name"] == "rouse-parking-token")
    assert re.fullmatch(r"[A-Za-z0-9]{40}", base64.b64decode(token["data"]["token"]).decode())
    for name in ("rouse-operator", "rouse-parking"):
        (container,) = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("valueFrom") for e in container["env"]}
        assert env["ROUSE_STATE_URL"] == {"secretKeyRef": {"name": "rouse-redis", "key": "url"}}
        assert env["ROUSE_PARKING_TOKEN"] == {
            "secretKeyRef": {"name": "rouse-parking-token", "key": "token"}
        }
    text = yaml.safe_dump_all(list(objects.values()))
    assert password not in text and "redis://" not in text


def test_parking_body_limit_is_configurable() -> None:
    """parking.maxBodyBytes reaches the parking service as ROUSE_MAX_BODY_BYTES (default the
    skills' default, 1 MiB); the schema refuses less than that (dead letters would be lost)."""

    def limit(*values: str) -> list[dict[str, Any]]:
        deployment = by_kind_name(helm_template(*values))[("Deployment", "rouse-parking")]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return [e for e in container["env"] if e["name"] == "ROUSE_MAX_BODY_BYTES"]

    assert limit() == [{"name": "ROUSE_MAX_BODY_BYTES", "value": "1048576"}]
    assert limit("parking.maxBodyBytes=104857600") == [
        {"name": "ROUSE_MAX_BODY_BYTES", "value": "104857600"}
    ]


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


@pytest.mark.parametrize("name", ["rouse-operator", "rouse-parking", "rouse-redis"])
def test_workloads_are_restricted(name: str) -> None:
    pod = by_kind_name(helm_template())[("Deployment", name)]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] > 0
    for container in pod["containers"]:
        assert container["securityContext"] == RESTRICTED_CONTAINER
        assert container["resources"]["requests"], f"{name} has no resource requests"
        assert container["livenessProbe"] and container["readinessProbe"]
    assert pod.get("automountServiceAccountToken") is (name == "rouse-operator")


def test_operator_deployment() -> None:
    objects = by_kind_name(helm_template())
    deployment = objects[("Deployment", "rouse-operator")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "rouse"
    assert container["image"] == "ghcr.io/rouse-dev/rouse-operator:0.1.0"
    assert container["envFrom"] == [{"configMapRef": {"name": "rouse-config"}}]
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64


def test_operator_elects_a_leader_and_rolls_out_without_a_gap() -> None:
    objects = by_kind_name(helm_template("operator.replicas=3"))
    deployment = objects[("Deployment", "rouse-operator")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "rouse_operator"]
    assert container["args"] == ["--all-namespaces", "--leader-elect"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    field = {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": field},
        {"name": "ROUSE_LEADER_NAMESPACE", "valueFrom": field},
        {"name": "ROUSE_LEADER_LEASE_NAME", "value": "rouse-operator"},
        {"name": "ROUSE_LEADER_LEASE_SECONDS", "value": "15"},
        {"name": "ROUSE_LEADER_RENEW_DEADLINE_SECONDS", "value": "10"},
        {"name": "ROUSE_LEADER_RETRY_SECONDS", "value": "2"},
        {
            "name": "ROUSE_STATE_URL",
            "valueFrom": {"secretKeyRef": {"name": "rouse-redis", "key": "url"}},
        },
        {
            "name": "ROUSE_PARKING_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "rouse-parking-token", "key": "token"}},
        },
    ]
    labels = objects[("Role", "rouse-operator-leader-election")]["metadata"]["labels"]
    assert objects[("Role", "rouse-operator-leader-election")] == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": "rouse-operator-leader-election",
            "namespace": NAMESPACE,
            "labels": labels,
        },
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": ["rouse-operator"],
                "verbs": ["get", "update"],
            },
        ],
    }
    assert objects[("RoleBinding", "rouse-operator-leader-election")] == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": "rouse-operator-leader-election",
            "namespace": NAMESPACE,
            "labels": labels,
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "rouse-operator-leader-election",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "rouse", "namespace": NAMESPACE}],
    }


def test_operator_without_leader_election_runs_one_replica_with_recreate() -> None:
    objects = by_kind_name(helm_template("operator.leaderElection.enabled=false"))
    deployment = objects[("Deployment", "rouse-operator")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--all-namespaces"]
    assert not any(e["name"].startswith("ROUSE_LEADER_") for e in container["env"])
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert ("Role", "rouse-operator-leader-election") not in objects


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["redis.enabled=false"], "stateUrl"),
        (["parking.enabled=false"], "parkingUrl"),
        (["operator.replicas=2", "operator.leaderElection.enabled=false"], "leaderElection"),
        (["operator.replicas=-1"], "replicas"),
        (["operator.leaderElection.renewDeadlineSeconds=15"], "renewDeadlineSeconds <"),
        (["operator.leaderElection.retryPeriodSeconds=0"], "retryPeriodSeconds"),
        (["operator.verbose=loud"], "verbose"),
        (["settings.stateUrl=postgres://x"], "stateUrl"),
        (["settings.stateUrl=redis://:s3cret@r:6379/0"], "stateStore.existingSecret"),
        (["settings.stateUrl=redis://u:s3cret@r:6379/0"], "carries a password"),
        (["settings.stateUrl=redis://r:6379/0", "stateStore.existingSecret=s"], "not both"),
        (["stateStore.existingSecret=Bad_Name"], "existingSecret"),
        (["stateStore.secretKey=a/b"], "secretKey"),
        (["parking.maxBodyBytes=65536"], "maxBodyBytes"),
        (["parking.maxBodyBytes=null"], "maxBodyBytes"),
        (["unknownKey=1"], "unknownKey"),
        (["settings.evalIntervalSeconds=1"], "evalIntervalSeconds"),
    ],
)
def test_values_schema_refuses(values: list[str], message: str) -> None:
    argv = [helm_bin(), "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION]
    for value in values:
        argv += ["--set", value]
    proc = run(argv)
    assert proc.returncode != 0, f"helm accepted {values}"
    assert message in proc.stderr, proc.stderr


def test_values_file_is_documented() -> None:
    """Every leaf value carries a `## @param <path>` comment (the style of well-kept charts)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    text = (CHART / "values.yaml").read_text()

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict) and node:
            out = []
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else key
                # resource/probe/securityContext blocks are documented as a whole
                if key in {
                    "resources",
                    "podSecurityContext",
                    "securityContext",
                    "livenessProbe",
                    "readinessProbe",
                }:
                    out.append(path)
                else:
                    out.extend(leaves(value, path))
            return out
        return [prefix]

    undocumented = [p for p in leaves(values, "") if f"@param {p} " not in text]
    assert undocumented == []
