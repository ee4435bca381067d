"""The pinned helm (built by `make envtest`) and the Kubernetes version charts render for."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# helm built from source defaults to an old Kubernetes version; render for the pinned one.
KUBE_VERSION = next(
    line.split("=", 1)[1]
    for line in (REPO / "hack" / "envtest" / "versions.env").read_text().splitlines()
    if line.startswith("KUBERNETES_VERSION=")
)


def helm_bin() -> str:
    """The pinned helm from `make envtest`, else one on PATH; missing fails the test."""
    pinned = REPO / ".cache" / "envtest" / "bin" / "helm"
    if os.access(pinned, os.X_OK):
        return str(pinned)
    found = shutil.which("helm")
    if found is None:
        pytest.fail(f"helm is not installed: run `make envtest` (builds {pinned})")
    return found
