"""operator/Dockerfile proved without Docker: its own pip steps, run as written, then the image's command.

The build stage's COPY + `pip wheel` and the final stage's `pip install --no-index`
are read from the Dockerfile and run into a fresh venv (downloads from PyPI, ~1-2 min).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rouse_testing.dockerfile import REPO, build_wheels, install_final, run, stages

OPERATOR_DOCKERFILE = REPO / "operator" / "Dockerfile"
DEPLOYMENT = REPO / "charts" / "rouse" / "templates" / "operator-deployment.yaml"


@pytest.mark.parametrize("dockerfile", ["runtime/Dockerfile", "operator/Dockerfile"])
def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: str) -> None:
    """runAsNonRoot can only verify a numeric UID; 0 would be root."""
    user = stages(REPO / dockerfile)[-1].user()
    ids = user.split(":")
    assert all(part.isdigit() and int(part) != 0 for part in ids), f"{dockerfile}: USER {user}"


def chart_operator_command() -> list[str]:
    """The operator container's command plus its unconditional args (before any {{ if }})."""
    text = DEPLOYMENT.read_text(encoding="utf-8")
    command = re.search(r"^\s+command: (\[.*\])$", text, re.MULTILINE)
    assert command, f"no command: line in {DEPLOYMENT}"
    args = re.search(r"^\s+args:\n((?:\s+- .*\n)+)", text[command.end() :], re.MULTILINE)
    assert args, f"no args: after the command in {DEPLOYMENT}"
    fixed = [line.strip()[2:] for line in args.group(1).splitlines()]
    return [*json.loads(command.group(1)), *fixed]


def test_image_cmd_is_what_the_chart_runs() -> None:
    final = stages(OPERATOR_DOCKERFILE)[-1]
    assert final.all("ENTRYPOINT") == []  # the chart's command would replace it anyway
    (*_, cmd) = final.all("CMD")
    assert json.loads(cmd) == chart_operator_command() == [
        "python", "-m", "rouse_operator", "--all-namespaces",
    ]  # fmt: skip


def test_wheels_built_and_installed_as_the_dockerfile_does_start_the_operator(
    tmp_path: Path,
) -> None:
    wheels, _ = build_wheels(OPERATOR_DOCKERFILE, tmp_path)
    ours = sorted(p.name for p in wheels.glob("rouse_*.whl"))
    assert ours == ["rouse_operator-0.1.0-py3-none-any.whl", "rouse_runtime-0.1.0-py3-none-any.whl"]

    venv = tmp_path / "image"
    image_env = install_final(OPERATOR_DOCKERFILE, wheels, venv)
    home = tmp_path / "home"  # no ~/.kube here
    home.mkdir()
    workdir = tmp_path / "workdir"  # not the repository: nothing importable from the cwd
    workdir.mkdir()
    env = image_env | {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "KUBECONFIG": str(home / "missing-kubeconfig"),
        "ROUSE_METRICS_PORT": "0",
    }
    python = str(venv / "bin" / "python")

    def in_image(*args: str) -> tuple[int, str, str]:
        done = run([python, *args], timeout=120, cwd=workdir, env=env)
        return done.returncode, done.stdout, done.stderr

    code, out, err = in_image("-m", "rouse_operator", "--help")
    assert code == 0 and "--all-namespaces" in out and "--leader-elect" in out, out + err

    code, out, err = in_image(
        "-c",
        "import rouse_operator, rouse_runtime, kopf, kubernetes\n"
        "from rouse_runtime import agentspec\n"
        "print(rouse_operator.__file__); print(agentspec.crd_path())",
    )
    assert code == 0, err
    operator_file, crd = out.split()
    site = str(venv / "lib")
    assert operator_file.startswith(site) and crd.startswith(site), out
    assert crd.endswith("site-packages/rouse_runtime/crds/agent.yaml") and Path(crd).is_file()
    assert Path(crd).read_bytes() == (REPO / "crds" / "agent.yaml").read_bytes()

    # The image's CMD, with the venv's python, and no cluster: one clear error, not a retry loop.
    cmd = json.loads(stages(OPERATOR_DOCKERFILE)[-1].all("CMD")[-1])
    assert cmd[0] == "python"
    code, out, err = in_image(*cmd[1:])
    assert (code, out) == (2, ""), out + err
    assert err == (
        "rouse-operator: no Kubernetes cluster configured (Invalid kube-config file. "
        "No configuration found.); set KUBECONFIG or ~/.kube/config, or run in a pod with a "
        "service account\n"
    )
