"""kingress, the node's KIngress, against knative.dev/networking's own ingress conformance suite.

Every stable and beta test except `tls` (kingress has no TLS listener): basics, grpc, headers,
hosts, dispatch, percentage, retry, timeout, update, visibility, websocket, host rewrite...
"""

from __future__ import annotations

import subprocess

from rouse_testing.cluster import REPO_ROOT
from rouse_testing.node import Node


def test_kingress_passes_the_ingress_conformance_suite(real_node: Node) -> None:
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "node" / "kingress" / "conformance.sh")],
        env=real_node.env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    # client-go's deprecation warnings drown the suite's own lines
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "warnings.go" not in line]
    tail = "\n".join([line for line in lines if "FAIL" in line][:20] + lines[-40:])
    assert proc.returncode == 0, f"conformance failed:\n{tail}"
    assert "--- PASS: TestIngressConformance" in proc.stdout + proc.stderr, tail
