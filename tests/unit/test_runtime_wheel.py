"""The runtime wheel installed alone into a fresh venv, started the way the Dockerfile starts it.

This is the first real test of the package as shipped: its declared dependencies
suffice, kopf and the Kubernetes client are absent, and `rouse-runtime` serves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from rouse_testing.dockerfile import REPO, run
from rouse_testing.runtime import start_runtime


def test_wheel_in_a_fresh_venv_serves_without_kopf_or_kubernetes(tmp_path: Path) -> None:
    built = run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(REPO / "runtime"), "-w", str(tmp_path / "dist")]
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("rouse_runtime-*.whl")

    venv = tmp_path / "venv"
    created = run([sys.executable, "-m", "venv", str(venv)])
    assert created.returncode == 0, created.stderr
    installed = run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)]
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    python = str(venv / "bin" / "python")
    for forbidden in ("kopf", "kubernetes", "rouse_operator"):
        probe = run([python, "-c", f"import {forbidden}"])
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, forbidden
    shipped = run([python, "-c", "import rouse_runtime, sys; print(rouse_runtime.__file__)"])
    assert shipped.stdout.strip().startswith(str(venv)), shipped.stdout + shipped.stderr

    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "hello.py").write_text(
        "async def greet(event, ctx):\n    return {'hello': event.data['name']}\n"
    )
    rt = start_runtime(
        {"ROUSE_HANDLER": "hello:greet", "ROUSE_AGENT": "demo", "ROUSE_SKILL": "greet"},
        skills,
        command=[str(venv / "bin" / "rouse-runtime")],
    )
    try:
        assert httpx.get(f"{rt.url}/readyz").json() == {"status": "ready"}
        reply = httpx.post(
            rt.url,
            headers={
                "ce-specversion": "1.0",
                "ce-id": "w-1",
                "ce-source": "/tests/wheel",
                "ce-type": "demo.greet",
                "content-type": "application/json",
            },
            content=b'{"name": "wheel"}',
        )
        assert (
            reply.status_code,
            reply.headers["ce-type"],
            reply.headers["ce-source"],
            reply.json(),
        ) == (
            200,
            "dev.rouse.greet.completed",
            "/agents/demo/greet",
            {"hello": "wheel"},
        )
    finally:
        rt.stop()
