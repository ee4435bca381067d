"""The envtest control plane for tests: the same code as `make cluster-up` (hack/envtest/controlplane.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE_PY = REPO_ROOT / "hack" / "envtest" / "controlplane.py"


def load_module(name: str, path: Path) -> ModuleType:
    """Import a script of hack/ (not a package) once, under `name`."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


controlplane = load_module("rouse_envtest_controlplane", CONTROLPLANE_PY)
ControlPlaneError: type[Exception] = controlplane.ControlPlaneError
BIN_DIR: Path = controlplane.BIN_DIR
CRD_DIR: Path = controlplane.CRD_DIR


def default_broker(namespace: str, name: str = "default") -> dict[str, Any]:
    """The Knative Broker object the control plane puts in `default` and each test namespace."""
    broker: dict[str, Any] = controlplane.default_broker(namespace, name)
    return broker


@dataclass
class Cluster:
    """A running control plane as tests see it (the `cluster` fixture)."""

    plane: Any  # controlplane.ControlPlane

    @property
    def kubeconfig(self) -> Path:
        return Path(self.plane.kubeconfig)

    @property
    def bin_dir(self) -> Path:
        return Path(self.plane.bin_dir)

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG and PATH with the envtest bin dir (kubectl, helm) first."""
        env: dict[str, str] = self.plane.env()
        return env

    @property
    def api_log(self) -> Path:
        return Path(self.plane.api_log)

    @property
    def server(self) -> str:
        return str(self.plane.server)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster; raises with kubectl's stderr if check fails."""
        proc: subprocess.CompletedProcess[str] = self.plane.kubectl(
            *args, input=input, check=check, timeout=timeout
        )
        return proc

    def apply(
        self, manifests: Sequence[Mapping[str, Any]] | str, namespace: str | None = None
    ) -> str:
        """Server-side apply of manifest dicts or YAML text; returns kubectl's output."""
        out: str = self.plane.apply(manifests, namespace=namespace)
        return out

    def create_namespace(self, prefix: str = "t") -> str:
        """A fresh namespace with a `default` Broker in it."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        self.apply([default_broker(name)])
        return name

    def delete_namespace(self, name: str) -> None:
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def start_cluster(workdir: Path) -> Cluster:
    """Start etcd + kube-apiserver + kube-controller-manager in `workdir` (Knative CRDs installed)."""
    plane = controlplane.ControlPlane(workdir=workdir)
    plane.start()
    return Cluster(plane)
