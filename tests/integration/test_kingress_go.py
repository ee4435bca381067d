"""kingress's own Go tests: routing over real HTTP backends, the controller on a real API server."""

from __future__ import annotations

import os
import subprocess

from rouse_testing.cluster import BIN_DIR, REPO_ROOT
from rouse_testing.wait import require_tool


def test_kingress_go_tests_pass() -> None:
    go = require_tool("go", "install Go >= 1.26")
    env = dict(os.environ, ENVTEST_CACHE=str(BIN_DIR.parent), GOFLAGS="-buildvcs=false")
    proc = subprocess.run(
        [go, "test", "-trimpath", "-count=1", "./..."],
        cwd=REPO_ROOT / "hack" / "node" / "kingress",
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ok  \trouse.dev/hack/node/kingress" in proc.stdout, proc.stdout
