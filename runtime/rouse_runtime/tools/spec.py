"""The Agent's `spec.tools` as the launcher passes it and the runtime reads it.

Launcher side (pure, shared by the operator and local mode): `tools_env` is the
`ROUSE_TOOLS` value, JSON of everything but header values; `header_env` names the
variable each header's value arrives in, which the operator fills from the
Secret by reference (`valueFrom.secretKeyRef`) and local mode inherits from the
developer's shell. A credential therefore never sits in the Knative Service,
only in the pod's environment.

Runtime side: `parse_tools(env)` → `ToolServer`s, or ConfigError naming the
variable (a missing header value fails the start, not the first call).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rouse_runtime.envnames import ENV_TOOLS as ENV_TOOLS

HEADER_ENV_PREFIX = "ROUSE_TOOL_"
DEFAULT_TIMEOUT_SECONDS = 30.0


def header_env(server: str, header: str) -> str:
    """`ROUSE_TOOL_<SERVER>__<HEADER>`: server names are DNS labels and header names have
    no `_` (the CRD's patterns), so `__` keeps every pair's variable distinct."""
    return HEADER_ENV_PREFIX + f"{server}__{header}".upper().replace("-", "_")


def tools_env(tools: Sequence[Mapping[str, Any]]) -> str:
    """The `ROUSE_TOOLS` value for an Agent's `spec.tools` (no credential in it)."""
    servers = []
    for tool in tools:
        server = str(tool["name"])
        servers.append(
            {
                "name": server,
                "url": str(tool["url"]),
                "allow": None if tool.get("allow") is None else [str(t) for t in tool["allow"]],
                "approval": [str(t) for t in tool.get("approval") or []],
                "timeoutSeconds": float(tool.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
                "headers": {
                    str(h["name"]): header_env(server, str(h["name"]))
                    for h in tool.get("headers") or []
                },
            }
        )
    return json.dumps(servers, separators=(",", ":"), sort_keys=True)


def header_refs(tools: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(variable, secretKeyRef) of every header: what the operator puts in `valueFrom`."""
    return [
        (header_env(str(tool["name"]), str(h["name"])), dict(h["secretKeyRef"]))
        for tool in tools
        for h in tool.get("headers") or []
    ]


@dataclass(frozen=True)
class ToolServer:
    """One MCP server a skill may call (`spec.tools[]`), with its header values resolved."""

    name: str
    url: str
    allow: frozenset[str] | None = None  # None: every tool the server lists
    approval: frozenset[str] = frozenset()
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # credentials

    def allows(self, tool: str) -> bool:
        return self.allow is None or tool in self.allow


class ToolsConfigError(ValueError):
    """ROUSE_TOOLS is malformed or a header's variable is unset (the message names it)."""


_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _server(entry: Any, env: Mapping[str, str]) -> ToolServer:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ToolsConfigError(f"{ENV_TOOLS}: every entry needs a name, got {entry!r:.80}")
    name = entry["name"]
    if not _NAME.match(name):
        raise ToolsConfigError(f"{ENV_TOOLS}: server name {name!r} is not a DNS-1035 label")
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ToolsConfigError(f"{ENV_TOOLS}[{name}].url must be an http(s) URL")
    headers: dict[str, str] = {}
    for header, variable in (entry.get("headers") or {}).items():
        value = env.get(variable)
        if not value:
            raise ToolsConfigError(
                f"{variable} is not set: it carries header {header} of tool server {name!r}"
                " (the operator sets it from the Secret; in local mode export it before rouse dev)"
            )
        headers[header] = value
    allow = entry.get("allow")
    try:
        return ToolServer(
            name=name,
            url=url,
            allow=None if allow is None else frozenset(map(str, allow)),
            approval=frozenset(map(str, entry.get("approval") or [])),
            timeout_seconds=float(entry.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
            headers=headers,
        )
    except (TypeError, ValueError) as exc:
        raise ToolsConfigError(f"{ENV_TOOLS}[{name}]: {exc}") from None


def parse_tools(env: Mapping[str, str]) -> dict[str, ToolServer]:
    """The tool servers by name; empty without ROUSE_TOOLS."""
    raw = env.get(ENV_TOOLS, "").strip()
    if not raw:
        return {}
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ToolsConfigError(f"{ENV_TOOLS} is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ToolsConfigError(f"{ENV_TOOLS} must be a JSON list of tool servers")
    servers = [_server(entry, env) for entry in entries]
    by_name = {server.name: server for server in servers}
    if len(by_name) != len(servers):
        raise ToolsConfigError(f"{ENV_TOOLS}: server names must be unique")
    return by_name
