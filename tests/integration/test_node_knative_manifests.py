"""Knative's YAML for the one-node cluster (hack/node/knative/assemble.py) on a real API server.

The manifests are assembled afresh from the pinned modules (so this checks the code, not a
stale cache) and applied as the node harness applies them: the CRDs first (installed by the
control plane itself, as its Knative CRDs), then every other object in one server-side apply
on a fresh cluster. No Knative binary runs here; the webhook configurations the YAML carries
have no rules for what it creates, as upstream intends for a first install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rouse_testing.cluster import Cluster, ControlPlaneError, controlplane

ASSEMBLE_PY = Path(__file__).resolve().parents[2] / "hack" / "node" / "knative" / "assemble.py"
PRODUCTS = ("serving", "eventing")


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("knative-manifests")
    proc = subprocess.run(
        [sys.executable, str(ASSEMBLE_PY), "manifests", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"assemble.py failed:\n{proc.stderr}"
    return out


@pytest.fixture(scope="module")
def knative_cluster(tmp_path_factory: pytest.TempPathFactory, manifests: Path) -> Iterator[Cluster]:
    """A control plane of its own whose Knative CRDs are the assembled ones (installed for real)."""
    crds = tmp_path_factory.mktemp("knative-crds")
    for product in PRODUCTS:
        name = f"knative-{product}-crds.yaml"
        (crds / name).write_text((manifests / name).read_text())
    missing = controlplane.missing_tools(controlplane.BIN_DIR, crds)
    if missing:
        pytest.fail("envtest is not built: missing " + ", ".join(missing) + "; run `make envtest`")
    plane = controlplane.ControlPlane(workdir=tmp_path_factory.mktemp("envtest"), crd_dir=crds)
    try:
        plane.start()
    except ControlPlaneError as exc:
        pytest.fail(f"control plane with the assembled Knative CRDs did not start: {exc}")
    try:
        yield Cluster(plane)
    finally:
        plane.stop()


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_crd_is_established(knative_cluster: Cluster, manifests: Path) -> None:
    for product in PRODUCTS:
        for crd in docs(manifests / f"knative-{product}-crds.yaml"):
            name = crd["metadata"]["name"]
            got = json.loads(knative_cluster.kubectl("get", "crd", name, "-o", "json").stdout)
            conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
            assert conditions.get("Established") == "True", f"{name}: {conditions}"


def test_the_rest_applies_on_a_fresh_cluster_in_one_go(
    knative_cluster: Cluster, manifests: Path
) -> None:
    files = [manifests / f"knative-{product}.yaml" for product in PRODUCTS]
    args = ["apply", "--server-side", "--field-manager=rouse-node"]
    for f in files:
        args += ["-f", str(f)]
    out = knative_cluster.kubectl(*args, timeout=300).stdout
    applied = [line for line in out.splitlines() if line.endswith("serverside-applied")]
    assert len(applied) == sum(len(docs(f)) for f in files), out

    def data(namespace: str, name: str) -> dict[str, str]:
        cm = knative_cluster.kubectl("get", "configmap", "-n", namespace, name, "-o", "json")
        result: dict[str, str] = json.loads(cm.stdout)["data"]
        return result

    assert data("knative-serving", "config-network")["ingress-class"] == (
        "rouse.ingress.networking.knative.dev"
    )
    assert "dev.local" in data("knative-serving", "config-deployment")[
        "registries-skipping-tag-resolving"
    ].split(",")
    assert data("knative-eventing", "eventing-integrations-images")
    activator = json.loads(
        knative_cluster.kubectl(
            "get", "deployment", "-n", "knative-serving", "activator", "-o", "json"
        ).stdout
    )
    container = activator["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("dev.local/knative/activator:")
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container.get("resources", {}) == {}
