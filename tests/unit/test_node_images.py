"""hack/node/images.sh without building anything: its plan, content keys and input checks.

`images.sh plan` prints what `build` would do (each image ref, its archive and its content
key) from a NODE_CACHE laid out by the test: the Knative helper's images.txt and the Go
binaries under bin/. The real script runs; the images themselves are built and started by
the real-node tier.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGES_SH = REPO / "hack" / "node" / "images.sh"
APP_VERSION = yaml.safe_load((REPO / "charts" / "rouse" / "Chart.yaml").read_text())["appVersion"]


@dataclass(frozen=True)
class Planned:
    state: str
    archive: str
    key: str


def images_sh(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make system-deps`")
    env = {**os.environ, "NODE_CACHE": str(cache)}
    return subprocess.run(
        ["bash", str(IMAGES_SH), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def plan(cache: Path) -> dict[str, Planned]:
    proc = images_sh(cache, "plan")
    assert proc.returncode == 0, proc.stderr
    planned = {}
    for line in proc.stdout.splitlines():
        state, ref, archive, key = line.split()
        planned[ref] = Planned(state, archive, key)
    return planned


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A NODE_CACHE with images.txt, the activator binary, CoreDNS and the KIngress."""
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "images.txt").write_text(
        "# written by the Knative helper\n"
        "dev.local/knative/activator:v0.50.0 activator\n"
        "\n"
        "dev.local/knative/webhook webhook   # untagged\n"
    )
    (tmp_path / "bin").mkdir()
    for binary in ("activator", "coredns", "kingress"):
        (tmp_path / "bin" / binary).write_bytes(b"\x7fELF " + binary.encode())
    return tmp_path


def test_plan_builds_the_images_the_chart_and_the_examples_run(cache: Path) -> None:
    values = yaml.safe_load((REPO / "charts" / "rouse" / "values.yaml").read_text())
    wanted = {
        f"{values['operator']['image']['repository']}:{APP_VERSION}",
        f"{values['parking']['image']['repository']}:{APP_VERSION}",
    }
    for example in ("hello", "support-triage", "tools"):
        agent = yaml.safe_load((REPO / "examples" / example / "agent.yaml").read_text())
        wanted.add(agent["spec"]["image"])

    planned = plan(cache)

    assert wanted <= planned.keys()
    assert {"dev.local/debian-python:bookworm", "dev.local/pause:3.10"} <= planned.keys()
    assert {planned[ref].state for ref in wanted} == {"stale"}
    # One archive per image, but one OCI layout for all Go binary images.
    layout = str(cache / "images" / "binaries")
    binary_images = {ref for ref, p in planned.items() if p.archive == layout}
    assert binary_images == {
        "dev.local/knative/activator:v0.50.0",
        "dev.local/knative/webhook:latest",
        "dev.local/coredns:v1.15.0",
        "dev.local/rouse/kingress:dev",
    }
    archives = [p.archive for ref, p in planned.items() if ref not in binary_images]
    assert len(set(archives)) == len(archives)


def test_each_binary_becomes_an_image_and_an_untagged_ref_means_latest(cache: Path) -> None:
    (cache / "bin" / "kingress").unlink()

    planned = plan(cache)

    assert planned["dev.local/knative/activator:v0.50.0"].state == "stale"
    assert planned["dev.local/coredns:v1.15.0"].state == "stale"
    assert planned["dev.local/knative/webhook:latest"].state == "missing"
    assert planned["dev.local/rouse/kingress:dev"].state == "missing"


def test_an_image_is_current_until_its_binary_changes(cache: Path) -> None:
    before = plan(cache)
    activator = before["dev.local/knative/activator:v0.50.0"]
    # The Go binaries' images live in one OCI layout; each has its own key and digest file.
    layout = Path(activator.archive)
    layout.mkdir(parents=True)
    stem = "dev.local_knative_activator_v0.50.0"
    (cache / "images" / f"{stem}.digest").write_text("sha256:0\n")
    (cache / "images" / f"{stem}.key").write_text(activator.key + "\n")
    assert plan(cache)["dev.local/knative/activator:v0.50.0"].state == "built"

    (cache / "bin" / "activator").write_bytes(b"\x7fELF activator, rebuilt")
    after = plan(cache)

    assert after["dev.local/knative/activator:v0.50.0"].state == "stale"
    assert after["dev.local/knative/activator:v0.50.0"].key != activator.key
    unchanged = {ref for ref in before if ref != "dev.local/knative/activator:v0.50.0"}
    assert {ref: after[ref].key for ref in unchanged} == {ref: before[ref].key for ref in unchanged}


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("dev.local/knative/activator:v1 activator extra", "expected '<image-ref> <binary>'"),
        ("dev.local/knative/activator:v1", "expected '<image-ref> <binary>'"),
        ("localhost/activator:v1 activator", "is not a <registry.domain>/<path>[:<tag>] image ref"),
        ("dev.local/knative/activator:v1 ../activator", "'../activator' is not a binary file name"),
    ],
)
def test_a_bad_images_txt_line_is_refused_by_line_number(
    cache: Path, line: str, complaint: str
) -> None:
    (cache / "manifests" / "images.txt").write_text(f"# header\n{line}\n")

    proc = images_sh(cache, "plan")

    assert proc.returncode != 0
    assert "images.txt line 2" in proc.stderr
    assert complaint in proc.stderr, proc.stderr


def test_build_without_the_binaries_fails_before_building_naming_them(tmp_path: Path) -> None:
    proc = images_sh(tmp_path, "build")

    assert proc.returncode == 1
    assert f"{tmp_path}/manifests/images.txt" in proc.stderr
    assert f"{tmp_path}/bin/kingress" in proc.stderr
    assert f"{tmp_path}/bin/coredns" in proc.stderr
    assert "--allow-missing" in proc.stderr
    assert not (tmp_path / "images").exists()


def test_load_needs_a_running_containerd(cache: Path) -> None:
    if shutil.which("ctr") is None:
        pytest.fail("ctr is not installed: run `make system-deps` (Debian package containerd)")
    socket = cache / "run" / "containerd.sock"

    proc = images_sh(cache, "load", "--address", str(socket))

    assert proc.returncode == 1
    assert f"no containerd socket at {socket}" in proc.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), "a command is needed"),
        (("build", "load"), "one command at a time"),
        (("build", "--fast"), "unknown argument: --fast"),
        (("load", "--address"), "option --address needs a value"),
    ],
)
def test_usage_errors_exit_2(cache: Path, args: tuple[str, ...], complaint: str) -> None:
    proc = images_sh(cache, *args)

    assert proc.returncode == 2
    assert complaint in proc.stderr
    assert "Usage: images.sh COMMAND" in proc.stderr
