"""The Agent spec as both the operator and local mode read it.

One place for what a skill is called, which events reach it, and the env
contract between whoever starts a skill (the operator's Knative Service, or
local mode's process supervisor) and the runtime inside it. Pure: no I/O but
reading the agent file.

Schema validation and defaulting come from `crds/agent.yaml` (the one source of
truth), so local mode refuses exactly what the API server refuses.
"""

from __future__ import annotations

from typing import Any

Agent = dict[str, Any]
Skill = dict[str, Any]

API_VERSION = "rouse.dev/v1alpha1"
KIND = "Agent"

# Env contract between the launcher (Knative Service or local mode) and the runtime.
ENV_HANDLER = "ROUSE_HANDLER"
ENV_AGENT = "ROUSE_AGENT"
ENV_SKILL = "ROUSE_SKILL"
ENV_REPLY_TYPE = "ROUSE_REPLY_TYPE"
ENV_BROKER_URL = "ROUSE_BROKER_URL"
ENV_STATE_URL = "ROUSE_STATE_URL"
ENV_MAX_STEPS = "ROUSE_MAX_STEPS"
ENV_MAX_TOOL_CALLS = "ROUSE_MAX_TOOL_CALLS"
ENV_MAX_TOKENS = "ROUSE_MAX_TOKENS"
ENV_TIMEOUT_SECONDS = "ROUSE_TIMEOUT_SECONDS"


def service_name(agent_name: str, skill_name: str) -> str:
    """Name of a skill's Knative Service (and of its local process group)."""
    return f"{agent_name}-{skill_name}"


def reply_type(skill: Skill) -> str:
    """Type of the event a skill replies with when it returns data."""
    reply = skill.get("reply") or {}
    return str(reply.get("type") or f"dev.rouse.{skill['name']}.completed")


def reply_source(agent_name: str, skill_name: str) -> str:
    """Source attribute of a skill's reply events."""
    return f"/agents/{agent_name}/{skill_name}"


def skill_env(agent: Agent, skill: Skill, broker_url: str) -> dict[str, str]:
    """The ROUSE_* env a skill's runtime process needs (budget limits included)."""
    spec = agent["spec"]
    per_invocation = (spec.get("budget") or {}).get("perInvocation") or {}
    env = {
        ENV_HANDLER: str(skill["handler"]),
        ENV_AGENT: str(agent["metadata"]["name"]),
        ENV_SKILL: str(skill["name"]),
        ENV_REPLY_TYPE: reply_type(skill),
        ENV_BROKER_URL: broker_url,
    }
    limits = {
        ENV_MAX_STEPS: per_invocation.get("maxSteps"),
        ENV_MAX_TOOL_CALLS: per_invocation.get("maxToolCalls"),
        ENV_MAX_TOKENS: per_invocation.get("maxTokens"),
        ENV_TIMEOUT_SECONDS: skill.get("timeoutSeconds"),
    }
    env.update({name: str(value) for name, value in limits.items() if value is not None})
    return env
