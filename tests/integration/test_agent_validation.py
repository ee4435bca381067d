"""The API server with crds/agent.yaml installed: kubectl explain teaches, bad Agents are
refused at `kubectl apply` naming the field, and agentspec.validate_agent agrees with it
(same defaults, same refusals, same messages) on one shared table of cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rouse_runtime import agentspec
from rouse_testing.agents import INVALID, Invalid, base_agent
from rouse_testing.operator import install_agent_crd

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crd(cluster: Any) -> Any:
    install_agent_crd(cluster)
    return cluster


def dry_run(cluster: Any, namespace: str, obj: dict[str, Any]) -> Any:
    """`kubectl apply --dry-run=server` (strict field validation is kubectl's default)."""
    return cluster.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-",
        input=json.dumps(obj), check=False,
    )  # fmt: skip


def test_explain_teaches_the_fields(crd: Any) -> None:
    out = crd.kubectl("explain", "agent.spec.skills").stdout
    assert "KIND:       Agent" in out and "GROUP:      rouse.dev" in out
    assert "Each becomes a Knative Service named <agent>-<skill>" in out
    for field in ("handler", "events", "scaling", "delivery", "schedule", "timeoutSeconds"):
        assert f"  {field}\t" in out, field
    out = crd.kubectl("explain", "ag.spec.skills.scaling.min").stdout
    assert "Instances always kept (0 = scale to zero when idle)." in out


def test_explain_teaches_tools(crd: Any) -> None:
    out = crd.kubectl("explain", "agent.spec.tools").stdout
    assert 'MCP servers the skills may call with ctx.tools.call("<server>.<tool>", ...)' in out
    for field in ("name", "url", "headers", "allow", "approval", "timeoutSeconds"):
        assert f"  {field}\t" in out, field
    out = crd.kubectl("explain", "agent.spec.tools.headers").stdout
    assert "ROUSE_TOOL_<SERVER>__<HEADER>" in out and "secretKeyRef\t" in out


@pytest.mark.parametrize(
    "path", sorted(REPO.glob("examples/*/agent.yaml")), ids=lambda p: p.parent.name
)
def test_api_server_defaults_like_agentspec(crd: Any, namespace: str, path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    proc = dry_run(crd, namespace, obj)
    assert proc.returncode == 0, proc.stderr
    served = json.loads(proc.stdout)
    assert served["spec"] == agentspec.validate_agent(obj)["spec"]


def test_api_server_defaults_base_agent(crd: Any, namespace: str) -> None:
    proc = dry_run(crd, namespace, base_agent())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spec"] == agentspec.validate_agent(base_agent())["spec"]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_agent_refused_by_api_server_and_agentspec(
    crd: Any, namespace: str, case: Invalid
) -> None:
    obj = case.agent()
    proc = dry_run(crd, namespace, obj)
    assert proc.returncode != 0, f"API server accepted {case.id}"
    refusal = proc.stderr
    assert case.field in refusal, f"kubectl apply's refusal does not name {case.field}:\n{refusal}"
    with pytest.raises(agentspec.AgentInvalid) as caught:
        agentspec.validate_agent(obj)
    for message in caught.value.errors:
        assert message in refusal, f"agentspec says {message!r}, the API server says:\n{refusal}"
