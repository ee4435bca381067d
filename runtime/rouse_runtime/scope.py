"""Whose data a store key holds: every key is scoped by namespace and agent.

Two teams' Agents of the same name in two namespaces share the chart's store;
keying by agent alone would let one answer the other's events from stored
replies and read its state. Every key the runtime writes (idempotency, ctx.state,
checkpoints, waits) is built here; the ledger, gates and parked events carry the
namespace in their own rows. Namespace and agent are DNS labels (no `/`), so the
`<namespace>/<agent>/` prefix cannot be forged by a key chosen by a skill.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Outside a cluster (a developer's machine, `rouse dev`): Kubernetes' own default.
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Scope:
    """One agent of one namespace: the owner of every key built from it."""

    namespace: str
    agent: str

    def path(self, *parts: str) -> str:
        """`<namespace>/<agent>/<part>/...`: readable keys (ctx.state, checkpoints)."""
        return "/".join((self.namespace, self.agent, *parts))

    def digest(self, *parts: str) -> str:
        """A fixed-size key for arbitrary parts (event sources and ids of any length)."""
        raw = "\x1f".join((self.namespace, self.agent, *parts))
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()

    def tagged(self, tag: str, *parts: str) -> str:
        """`<tag>:["ns","agent",...]`: a key of its own kind, never equal to a `path` key."""
        return tag + ":" + json.dumps([self.namespace, self.agent, *parts], separators=(",", ":"))
