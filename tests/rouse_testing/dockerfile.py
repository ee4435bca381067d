"""Proving a Dockerfile without a Docker engine: run its build and final stages' pip steps.

The Dockerfile is parsed (not copied into the test), so a changed COPY, ENV or pip
command is exactly what the test runs: COPY sources go into a scratch /src, the
build stage's `pip wheel` runs there, and the final stage's `pip install` runs in a
fresh venv standing in for the image's Python.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(
    cmd: list[str],
    timeout: float = 600,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env
    )


@dataclass
class Stage:
    """One FROM ... stage: its instructions as (KEYWORD, argument text), in order."""

    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs (the only ENV form Rouse's Dockerfiles use)."""
        pairs: dict[str, str] = {}
        for arg in self.all("ENV"):
            for token in shlex.split(arg):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {arg!r}: only the key=value form is supported"
                pairs[key] = value
        return pairs

    def user(self) -> str:
        (*_, last) = self.all("USER") or ["<none>"]
        return last


def stages(dockerfile: Path) -> list[Stage]:
    """The stages of a Dockerfile (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    found: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arg = line.partition(" ")
        keyword, arg = keyword.upper(), " ".join(arg.split())
        if keyword == "FROM":
            words = arg.split()
            found.append(Stage(words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        elif found:
            found[-1].instructions.append((keyword, arg))
    return found


def _pip_step(run_arg: str, verb: str) -> list[str]:
    """The `pip <verb> ...` command of a RUN line (`a && b` split; the pip part kept)."""
    for part in run_arg.split("&&"):
        words = shlex.split(part)
        if words[:2] == ["pip", verb]:
            return words[1:]
    raise AssertionError(f"no `pip {verb}` in RUN {run_arg!r}")


def _relocate(words: list[str], old: str, new: Path) -> list[str]:
    """Replace an image path (e.g. /wheels) inside each argument with a scratch path."""
    return [re.sub(rf"(?<![\w/]){re.escape(old)}(?![\w])", str(new), w) for w in words]


def fresh_venv(path: Path) -> Path:
    """A new venv (the image's bare Python); returns its python."""
    created = run([sys.executable, "-m", "venv", str(path)])
    assert created.returncode == 0, created.stderr
    return path / "bin" / "python"


def build_wheels(dockerfile: Path, scratch: Path) -> tuple[Path, dict[str, str]]:
    """Do the build stage: COPY into scratch/src, then its `pip wheel` with its ENV.

    Returns the wheel directory (the image's /wheels) and the pip env used.
    """
    build = stages(dockerfile)[0]
    src = scratch / "src"
    for arg in build.all("COPY"):
        assert not arg.startswith("--"), f"COPY {arg!r}: flags are not expected in a build stage"
        source, dest = arg.split()
        shutil.copytree(REPO / source, src / dest)
    wheels = scratch / "wheels"
    env = os.environ | build.env()
    python = fresh_venv(scratch / "build-venv")
    for arg in build.all("RUN"):
        words = _relocate(_pip_step(arg, "wheel"), "/wheels", wheels)
        built = run([str(python), "-m", "pip", *words], cwd=src, env=env)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return wheels, env


def install_final(dockerfile: Path, wheels: Path, venv: Path) -> dict[str, str]:
    """Do the final stage's `pip install` into a fresh venv; returns the final stage's ENV."""
    final = stages(dockerfile)[-1]
    installs = [arg for arg in final.all("RUN") if "pip install" in arg]
    assert len(installs) == 1, f"expected one pip install in the final stage, got {installs}"
    words = _relocate(_pip_step(installs[0], "install"), "/wheels", wheels)
    env = os.environ | final.env()
    python = fresh_venv(venv)
    installed = run([str(python), "-m", "pip", *words], env=env)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return final.env()
