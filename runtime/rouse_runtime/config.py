"""The runtime's settings, read once from the env contract (names in envnames.py).

Pure: `load_config(env)` turns a mapping into a frozen `Config` or raises
`ConfigError` naming the variable and what is wrong with it, so a typo in a
Knative Service's env shows up as one clear line instead of a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from rouse_runtime.envnames import (
    ENV_AGENT,
    ENV_BROKER_URL,
    ENV_COMPENSATE_TYPE,
    ENV_FRONT_DOOR,
    ENV_HANDLER,
    ENV_JOIN,
    ENV_JOIN_DEADLINE,
    ENV_KUBERNETES_SERVICE_HOST,
    ENV_LLM_API_KEY,
    ENV_LLM_BASE_URL,
    ENV_LLM_MODEL,
    ENV_LLM_PRICES,
    ENV_LOG_LEVEL,
    ENV_MAX_BODY_BYTES,
    ENV_MAX_STEPS,
    ENV_MAX_TOKENS,
    ENV_MAX_TOOL_CALLS,
    ENV_NAMESPACE,
    ENV_PORT,
    ENV_REPLY_TYPE,
    ENV_RUNS_RETENTION,
    ENV_SKILL,
    ENV_STATE_URL,
    ENV_TIMEOUT_SECONDS,
    ENV_TOOLS,
)
from rouse_runtime.redact import redact
from rouse_runtime.scope import DEFAULT_NAMESPACE, DNS_LABEL, Scope

if TYPE_CHECKING:  # read only when their variables are set: most skills have neither
    from rouse_runtime.frontdoor.settings import FrontDoor
    from rouse_runtime.tools.spec import ToolServer

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_STATE_URL = "sqlite:///tmp/rouse/state.db"
DEFAULT_LLM_BASE_URL = "https://api.openai.com/v1"
# How long a claimed-but-unfinished invocation blocks duplicates when no timeout is set.
DEFAULT_LEASE_SECONDS = 330.0
# How long completed results answer redeliveries (Knative retries last minutes, not days).
IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600.0
DEFAULT_RUNS_RETENTION_SECONDS = 7 * 24 * 3600.0


class ConfigError(ValueError):
    """A ROUSE_* variable is missing or malformed; the message names it, never a credential."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


@dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    input: float
    output: float


@dataclass(frozen=True)
class Limits:
    """Per-invocation budget; None means unlimited."""

    max_steps: int | None = None
    max_tool_calls: int | None = None
    max_tokens: int | None = None
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class Config:
    handler: str
    agent: str
    skill: str
    reply_type: str
    reply_source: str
    port: int = DEFAULT_PORT
    broker_url: str | None = None
    state_url: str = DEFAULT_STATE_URL
    limits: Limits = field(default_factory=Limits)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    llm_base_url: str = DEFAULT_LLM_BASE_URL
    llm_api_key: str | None = None
    llm_model: str | None = None
    llm_prices: Mapping[str, Price] = field(default_factory=dict)
    log_level: str = "INFO"
    namespace: str = DEFAULT_NAMESPACE
    tools: Mapping[str, ToolServer] = field(default_factory=dict)  # spec.tools (ROUSE_TOOLS)
    # Seconds a run's history is kept after its last record (runs/log.py).
    runs_retention: float = DEFAULT_RUNS_RETENTION_SECONDS
    # A fan-in join (runs/join.py): collect parts, run once when all are in or past the deadline.
    join: bool = False
    join_deadline: float | None = None
    # The event type that undoes a completed step of this skill (runs/saga.py).
    compensate_type: str | None = None
    front_door: FrontDoor | None = None  # spec.skills[].http: see frontdoor/

    @cached_property
    def scope(self) -> Scope:
        """The (namespace, agent) every store key of this skill is scoped by (made once: every
        event's idempotency key uses it)."""
        return Scope(self.namespace, self.agent)

    @property
    def lease_seconds(self) -> float:
        """How long an unfinished claim holds off duplicates (longer than any run)."""
        timeout = self.limits.timeout_seconds
        return DEFAULT_LEASE_SECONDS if timeout is None else timeout + 30.0


def _int(env: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be > 0")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise ConfigError(f"{name}={raw!r} must be true or false")


def parse_prices(raw: str) -> dict[str, Price]:
    """`{"model": {"input": usd_per_1M, "output": usd_per_1M}}` → prices."""
    if not raw.strip():
        return {}
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{ENV_LLM_PRICES} is not valid JSON: {exc}") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{ENV_LLM_PRICES} must be a JSON object of model -> prices")
    prices: dict[str, Price] = {}
    for model, entry in table.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{ENV_LLM_PRICES}[{model!r}] must be an object")
        try:
            prices[model] = Price(input=float(entry["input"]), output=float(entry["output"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{ENV_LLM_PRICES}[{model!r}] needs numeric 'input' and 'output' (USD per 1M tokens)"
            ) from None
    return prices


def _state_url(raw: str) -> str:
    if raw.startswith(("sqlite://", "redis://", "rediss://", "unix://")):
        return raw
    raise ConfigError(f"{ENV_STATE_URL}={raw!r}: expected sqlite:///path or redis://host:port/db")


def default_reply_type(skill: str) -> str:
    """As agentspec.reply_type for a skill without `reply.type`."""
    return f"dev.rouse.{skill}.completed"


def reply_source(agent: str, skill: str) -> str:
    """As agentspec.reply_source."""
    return f"/agents/{agent}/{skill}"


def _namespace(env: Mapping[str, str]) -> str:
    """ROUSE_NAMESPACE; outside a cluster `default`; in a cluster without it, an error.

    Skill pods mount no service-account token, so only the launcher can say the
    namespace; guessing there would key the ledger and gates under the wrong one
    (a budget that never trips, a reject gate never read).
    """
    namespace = env.get(ENV_NAMESPACE, "").strip()
    if not namespace:
        if env.get(ENV_KUBERNETES_SERVICE_HOST, "").strip():
            raise ConfigError(
                f"{ENV_NAMESPACE} is not set, and this process runs in a Kubernetes pod: set it to"
                " the pod's namespace (the operator does; by hand: a fieldRef to metadata.namespace)"
            )
        return DEFAULT_NAMESPACE
    if not DNS_LABEL.match(namespace):
        raise ConfigError(f"{ENV_NAMESPACE}={namespace!r} is not a DNS-1123 label")
    return namespace


def _tools(env: Mapping[str, str]) -> dict[str, ToolServer]:
    if not env.get(ENV_TOOLS, "").strip():
        return {}
    from rouse_runtime.tools.spec import ToolsConfigError, parse_tools

    try:
        return parse_tools(env)
    except ToolsConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_config(env: Mapping[str, str]) -> Config:
    """Read the env contract; raise ConfigError naming the first bad variable."""
    handler = env.get(ENV_HANDLER, "").strip()
    if not handler:
        raise ConfigError(f"{ENV_HANDLER} is not set (expected module:function)")
    module, sep, function = handler.partition(":")
    if not sep or not module or not function:
        raise ConfigError(f"{ENV_HANDLER}={handler!r} must look like module:function")
    agent = env.get(ENV_AGENT, "").strip() or "local"
    skill = env.get(ENV_SKILL, "").strip() or function.rsplit(".", 1)[-1]
    reply = env.get(ENV_REPLY_TYPE, "").strip() or default_reply_type(skill)
    port = _int(env, ENV_PORT, minimum=0)
    max_body = _int(env, ENV_MAX_BODY_BYTES, minimum=1)
    level = env.get(ENV_LOG_LEVEL, "INFO").strip().upper() or "INFO"
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{ENV_LOG_LEVEL}={level!r} must be DEBUG, INFO, WARNING or ERROR")
    return Config(
        handler=handler,
        agent=agent,
        skill=skill,
        reply_type=reply,
        reply_source=reply_source(agent, skill),
        port=DEFAULT_PORT if port is None else port,
        broker_url=env.get(ENV_BROKER_URL, "").strip() or None,
        state_url=_state_url(env.get(ENV_STATE_URL, "").strip() or DEFAULT_STATE_URL),
        limits=Limits(
            max_steps=_int(env, ENV_MAX_STEPS, minimum=0),
            max_tool_calls=_int(env, ENV_MAX_TOOL_CALLS, minimum=0),
            max_tokens=_int(env, ENV_MAX_TOKENS, minimum=0),
            timeout_seconds=_float(env, ENV_TIMEOUT_SECONDS),
        ),
        max_body_bytes=DEFAULT_MAX_BODY_BYTES if max_body is None else max_body,
        llm_base_url=(env.get(ENV_LLM_BASE_URL, "").strip() or DEFAULT_LLM_BASE_URL).rstrip("/"),
        llm_api_key=env.get(ENV_LLM_API_KEY) or None,
        llm_model=env.get(ENV_LLM_MODEL, "").strip() or None,
        llm_prices=parse_prices(env.get(ENV_LLM_PRICES, "")),
        log_level=level,
        namespace=_namespace(env),
        tools=_tools(env),
        runs_retention=_float(env, ENV_RUNS_RETENTION) or DEFAULT_RUNS_RETENTION_SECONDS,
        join=_bool(env, ENV_JOIN),
        join_deadline=_float(env, ENV_JOIN_DEADLINE),
        compensate_type=env.get(ENV_COMPENSATE_TYPE, "").strip() or None,
        front_door=_front_door(env),
    )


def _front_door(env: Mapping[str, str]) -> FrontDoor | None:
    if not env.get(ENV_FRONT_DOOR, "").strip():
        return None
    from rouse_runtime.frontdoor.settings import load_front_door

    try:
        return load_front_door(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
