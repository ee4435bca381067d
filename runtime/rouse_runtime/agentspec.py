"""The Agent spec as both the operator and local mode read it.

One place for what a skill is called, which events reach it, and the env
contract between whoever starts a skill (the operator's Knative Service, or
local mode's process supervisor) and the runtime inside it. Pure: no I/O but
reading the agent file.

Schema validation and defaulting come from `crds/agent.yaml` (the one source of
truth), so local mode refuses exactly what the API server refuses.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rouse_runtime import structural

# Env contract between the launcher (Knative Service or local mode) and the runtime
# (re-exported: agentspec.ENV_* is what launchers use).
from rouse_runtime.envnames import ENV_AGENT as ENV_AGENT
from rouse_runtime.envnames import ENV_API_KEYS as ENV_API_KEYS
from rouse_runtime.envnames import ENV_BROKER_URL as ENV_BROKER_URL
from rouse_runtime.envnames import ENV_COMPENSATE_TYPE as ENV_COMPENSATE_TYPE
from rouse_runtime.envnames import ENV_FRONT_DOOR as ENV_FRONT_DOOR
from rouse_runtime.envnames import ENV_HANDLER as ENV_HANDLER
from rouse_runtime.envnames import ENV_JOIN as ENV_JOIN
from rouse_runtime.envnames import ENV_JOIN_DEADLINE as ENV_JOIN_DEADLINE
from rouse_runtime.envnames import ENV_MAX_STEPS as ENV_MAX_STEPS
from rouse_runtime.envnames import ENV_MAX_TOKENS as ENV_MAX_TOKENS
from rouse_runtime.envnames import ENV_MAX_TOOL_CALLS as ENV_MAX_TOOL_CALLS
from rouse_runtime.envnames import ENV_NAMESPACE as ENV_NAMESPACE
from rouse_runtime.envnames import ENV_REPLY_TYPE as ENV_REPLY_TYPE
from rouse_runtime.envnames import ENV_SKILL as ENV_SKILL
from rouse_runtime.envnames import ENV_STATE_URL as ENV_STATE_URL
from rouse_runtime.envnames import ENV_TIMEOUT_SECONDS as ENV_TIMEOUT_SECONDS
from rouse_runtime.policies.durations import parse_duration
from rouse_runtime.tools.spec import ENV_TOOLS, tools_env

Agent = dict[str, Any]
Skill = dict[str, Any]

API_VERSION = "rouse.dev/v1alpha1"
KIND = "Agent"


# Child names: "<agent>-<skill>" is at most 58 characters (a CEL rule in the CRD),
# so the longest suffix ("-cron") still fits a 63-character DNS label.
MAX_EVENTS_PER_SKILL = 10  # the CRD's maxItems: a Trigger's index is one digit
PING_TYPE = "dev.knative.sources.ping"  # the type of a schedule's ticks (a PingSource's)
PINGSOURCE_SUFFIX = "cron"


class AgentInvalid(ValueError):  # noqa: N818 (the name local mode and the CLI use)
    """An Agent the API server would refuse; `errors` are its messages (field path first)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid Agent:\n" + "\n".join(f"  {e}" for e in self.errors))


def service_name(agent_name: str, skill_name: str) -> str:
    """Name of a skill's Knative Service (and of its local process group)."""
    return f"{agent_name}-{skill_name}"


def trigger_name(agent_name: str, skill_name: str, index: int) -> str:
    """Name of the Trigger for the `index`-th event filter of a skill (0..9)."""
    return f"{service_name(agent_name, skill_name)}-{index}"


def pingsource_name(agent_name: str, skill_name: str) -> str:
    """Name of the PingSource that wakes a skill on its schedule (and of the Trigger that
    delivers its ticks to the skill)."""
    return f"{service_name(agent_name, skill_name)}-{PINGSOURCE_SUFFIX}"


def ping_source(namespace: str, agent_name: str, skill_name: str) -> str:
    """The CloudEvents source of a schedule's ticks, as Knative's PingSource stamps it."""
    return f"/apis/v1/namespaces/{namespace}/pingsources/{pingsource_name(agent_name, skill_name)}"


def reply_type(skill: Skill) -> str:
    """Type of the event a skill replies with when it returns data."""
    reply = skill.get("reply") or {}
    return str(reply.get("type") or f"dev.rouse.{skill['name']}.completed")


def reply_source(agent_name: str, skill_name: str) -> str:
    """Source attribute of a skill's reply events."""
    return f"/agents/{agent_name}/{skill_name}"


def is_front_door(skill: Skill) -> bool:
    """Whether the skill answers people over HTTP (spec.skills[].http) instead of events."""
    return skill.get("http") is not None


def front_door_mode(skill: Skill) -> str | None:
    """ROUSE_FRONT_DOOR of a skill: "public", "keys" (callers need an API key), or None."""
    http = skill.get("http")
    if http is None:
        return None
    return "public" if http.get("public") else "keys"


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
    namespace = agent["metadata"].get("namespace")
    if namespace:  # the runtime keys all its data by it (skill pods mount no token to learn it)
        env[ENV_NAMESPACE] = str(namespace)
    limits = {
        ENV_MAX_STEPS: per_invocation.get("maxSteps"),
        ENV_MAX_TOOL_CALLS: per_invocation.get("maxToolCalls"),
        ENV_MAX_TOKENS: per_invocation.get("maxTokens"),
        ENV_TIMEOUT_SECONDS: skill.get("timeoutSeconds"),
    }
    env.update({name: str(value) for name, value in limits.items() if value is not None})
    if spec.get("tools"):  # header values are not in it: see tools.spec.header_refs
        env[ENV_TOOLS] = tools_env(spec["tools"])
    join = skill.get("join")
    if join is not None:  # a fan-in join (runs/join.py)
        env[ENV_JOIN] = "true"
        if join.get("deadline"):
            env[ENV_JOIN_DEADLINE] = f"{parse_duration(str(join['deadline'])):g}"
    compensate = skill.get("compensate")
    if compensate is not None:  # the event that undoes a step (runs/saga.py)
        env[ENV_COMPENSATE_TYPE] = str(compensate["type"])
    mode = front_door_mode(skill)
    if mode is not None:  # the keys themselves come by reference (a Secret), never here
        env[ENV_FRONT_DOOR] = mode
    return env


def crd_path() -> Path:
    """The Agent CRD: shipped inside the wheel, or the repository's crds/ in an editable install."""
    packaged = resources.files("rouse_runtime").joinpath("crds", "agent.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parents[2] / "crds" / "agent.yaml"
    if repo.is_file():
        return repo
    raise FileNotFoundError(
        f"Agent CRD not found: neither {packaged} (wheel) nor {repo} (source tree) exists"
    )


@lru_cache(maxsize=1)
def _crd() -> dict[str, Any]:
    with crd_path().open(encoding="utf-8") as stream:
        crd: dict[str, Any] = yaml.safe_load(stream)
    return crd


def crd() -> dict[str, Any]:
    """A copy of the Agent CustomResourceDefinition."""
    return copy.deepcopy(_crd())


def agent_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the served version (v1alpha1)."""
    version = next(v for v in _crd()["spec"]["versions"] if v["name"] == API_VERSION.split("/")[1])
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def validate_agent(obj: Any) -> Agent:
    """A defaulted copy of `obj`, or AgentInvalid with the API server's messages.

    Checks what `kubectl apply` of the object would: apiVersion/kind, metadata.name,
    unknown fields, the CRD's schema after defaulting, and its CEL rules.
    """
    if not isinstance(obj, dict):
        raise AgentInvalid([f"Invalid value: {type(obj).__name__}: an Agent must be a mapping"])
    errors: list[str] = []
    if obj.get("apiVersion") != API_VERSION:
        errors.append(
            f"apiVersion: Unsupported value: {obj.get('apiVersion')!r}: supported values: "
            f'"{API_VERSION}"'
        )
    if obj.get("kind") != KIND:
        errors.append(f'kind: Unsupported value: {obj.get("kind")!r}: supported values: "{KIND}"')
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        errors.append("metadata.name: Required value: name is required")
    if errors:
        raise AgentInvalid(errors)
    defaulted, errors = structural.validate(obj, agent_schema())
    if errors:
        raise AgentInvalid(errors)
    result: Agent = defaulted
    return result


def load_agent_file(path: str | Path) -> Agent:
    """Read one Agent from a YAML file and validate it (see validate_agent)."""
    with Path(path).open(encoding="utf-8") as stream:
        documents = [d for d in yaml.safe_load_all(stream) if d is not None]
    if len(documents) != 1:
        raise AgentInvalid([f"{path}: expected exactly one YAML document, found {len(documents)}"])
    return validate_agent(documents[0])
