"""Knative's own defaulting and validation, via tests/knative-validate (built by `make envtest`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from rouse_testing.cluster import BIN_DIR

KNATIVE_VALIDATE = BIN_DIR / "knative-validate"


def run_knative_validate(text: str) -> subprocess.CompletedProcess[str]:
    """Run knative-validate on YAML/JSON text (multi-document allowed)."""
    if not KNATIVE_VALIDATE.exists():
        raise AssertionError(f"{KNATIVE_VALIDATE} is missing: run `make envtest`")
    return subprocess.run(
        [str(KNATIVE_VALIDATE)], input=text, capture_output=True, text=True, timeout=60, check=False
    )


def knative_validate(manifests: Sequence[Mapping[str, Any]]) -> None:
    """Assert Knative's SetDefaults + Validate accept every manifest (raises with Knative's message)."""
    if not manifests:
        raise AssertionError("knative_validate: no manifests given")
    text = "\n---\n".join(json.dumps(m) for m in manifests)
    proc = run_knative_validate(text)
    if proc.returncode != 0:
        raise AssertionError(f"Knative refuses a manifest:\n{proc.stderr.strip()}")
