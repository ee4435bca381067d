"""The env contract's variable names, written once.

Both sides import them: launchers (agentspec.skill_env, for the operator's
Knative Service and local mode) and the runtime (config.load_config). A module
of constants only, so starting a skill does not import agentspec's CRD
validator (yaml, jsonschema, CEL) to learn them.
"""

from __future__ import annotations

# Set by the launcher from the Agent (agentspec.skill_env).
ENV_HANDLER = "ROUSE_HANDLER"
ENV_TOOLS = "ROUSE_TOOLS"  # spec.tools as JSON (tools/spec.py)
ENV_AGENT = "ROUSE_AGENT"
ENV_SKILL = "ROUSE_SKILL"
ENV_NAMESPACE = "ROUSE_NAMESPACE"
ENV_REPLY_TYPE = "ROUSE_REPLY_TYPE"
ENV_BROKER_URL = "ROUSE_BROKER_URL"
ENV_STATE_URL = "ROUSE_STATE_URL"
ENV_MAX_STEPS = "ROUSE_MAX_STEPS"
ENV_MAX_TOOL_CALLS = "ROUSE_MAX_TOOL_CALLS"
ENV_MAX_TOKENS = "ROUSE_MAX_TOKENS"
ENV_TIMEOUT_SECONDS = "ROUSE_TIMEOUT_SECONDS"
ENV_JOIN = "ROUSE_JOIN"  # "true": the skill is a fan-in join (spec.skills[].join)
ENV_JOIN_DEADLINE = "ROUSE_JOIN_DEADLINE"  # seconds after the first part
ENV_COMPENSATE_TYPE = "ROUSE_COMPENSATE_TYPE"  # the event that undoes a step (compensate.type)
# A front door (spec.skills[].http): "keys" or "public"; unset for an event skill.
ENV_FRONT_DOOR = "ROUSE_FRONT_DOOR"
# The accepted API keys of a front door, one per line (a secretKeyRef in a cluster).
ENV_API_KEYS = "ROUSE_API_KEYS"
# Where a front door reads a run's progress (local mode: the broker's /chains/{run}).
ENV_PROGRESS_URL = "ROUSE_PROGRESS_URL"

# The runtime's own settings (the platform or the user sets them).
ENV_PORT = "PORT"
ENV_MAX_BODY_BYTES = "ROUSE_MAX_BODY_BYTES"
ENV_LLM_BASE_URL = "ROUSE_LLM_BASE_URL"
ENV_LLM_API_KEY = "ROUSE_LLM_API_KEY"
ENV_LLM_MODEL = "ROUSE_LLM_MODEL"
ENV_LLM_PRICES = "ROUSE_LLM_PRICES"
ENV_LOG_LEVEL = "ROUSE_LOG_LEVEL"
ENV_RUNS_RETENTION = "ROUSE_RUNS_RETENTION"

# Set by Kubernetes in every pod: tells "in a cluster" from a developer's machine.
ENV_KUBERNETES_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"
