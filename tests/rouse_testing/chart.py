"""The Helm chart rendered by the pinned helm (`helm template`: no cluster needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rouse_testing.cluster import REPO_ROOT

CHART = REPO_ROOT / "charts" / "rouse"
# helm built from source defaults to an old Kubernetes version; render for the pinned one.
KUBE_VERSION = next(
    line.split("=", 1)[1]
    for line in (REPO_ROOT / "hack" / "envtest" / "versions.env").read_text().splitlines()
    if line.startswith("KUBERNETES_VERSION=")
)
RELEASE = "rouse"
NAMESPACE = "rouse-system"


def helm_bin() -> str:
    """The pinned helm from `make envtest` (this checkout's or ENVTEST_CACHE's), else one on
    PATH; missing fails the test."""
    for cache in (REPO_ROOT / ".cache" / "envtest", Path(os.environ.get("ENVTEST_CACHE", "/-"))):
        pinned = cache / "bin" / "helm"
        if os.access(pinned, os.X_OK):
            return str(pinned)
    found = shutil.which("helm")
    if found is None:
        pytest.fail("helm is not installed: run `make envtest`")
    return found


def helm_template(*sets: str) -> list[dict[str, Any]]:
    """Render the chart (templates only) with `--set` values and return its objects."""
    argv = [helm_bin(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    argv += ["--kube-version", KUBE_VERSION]
    for value in sets:
        argv += ["--set", value]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
