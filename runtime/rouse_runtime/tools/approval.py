"""Approval of a tool call, on the runtime's own suspend-and-resume (suspend.py).

A call that needs approval (listed in `spec.tools[].approval`, or annotated
`destructiveHint` by its server) ends the invocation the way `ctx.wait_for`
does, with one difference: the skill replies with a
`dev.rouse.tool.approval.requested` event naming the tool, its arguments and
the event that answers it. That answer is an event of the skill's decision type
(`decision_type`) carrying `rousekey` and data `{"approved": true}` (anything
else is a rejection), and best the original's `traceparent` (the request's
`answer` lists all three), so the whole run stays one chain. It resumes the
skill: the runtime runs the handler again for the *original* event (the reply
answers the approval event, as any resumed run's does), the calls made before replay from the journal
(calls.py), and the call that waited runs now (approved) or raises
`ToolRejected`. The resume takes the waiting record's idempotency claim, so
two answers, or a redelivered one, resume once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rouse_runtime.events import derived_id, dump_event, load_event, new_event, trace_attributes
from rouse_runtime.suspend import KEY_ATTRIBUTE

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

    from rouse_runtime.config import Config
    from rouse_runtime.suspend import Resumed

REQUEST_TYPE = "dev.rouse.tool.approval.requested"
MARKER = "rouse.tool.approval"  # the checkpoint key that tells a tool approval from a wait_for


def decision_type(agent: str, skill: str) -> str:
    """Type of the event that approves or rejects a call of this skill (list it in its events)."""
    return f"dev.rouse.{agent}.{skill}.tool.approval"


def arguments_digest(arguments: dict[str, Any]) -> str:
    """Fingerprint of a call's arguments: an approval holds for these arguments only."""
    raw = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    """The answer to one approval request, handed to the resumed run's `ctx.tools`."""

    call: int  # which call of the run (1-based) it answers
    tool: str
    digest: str
    approved: bool
    data: dict[str, Any]


@dataclass(frozen=True)
class Pending:
    """A call waiting for approval: what the waiting record and the request event carry."""

    call: int
    tool: str
    arguments: dict[str, Any]
    reason: str  # "declared" (spec.tools[].approval) or "destructive" (server annotation)

    def key(self, config: Config, event: CloudEvent) -> str:
        """The `rousekey` the answer must carry: one per (event, call)."""
        parts = (config.skill, event["source"], event["id"], "tool-approval", str(self.call))
        return config.scope.digest(*parts)[:32]

    def checkpoint(self, event: CloudEvent) -> dict[str, Any]:
        record = {
            "call": self.call,
            "tool": self.tool,
            "digest": arguments_digest(self.arguments),
            "event": dump_event(event),
        }
        return {MARKER: record}

    def request(self, config: Config, event: CloudEvent, key: str) -> CloudEvent:
        """The approval-request reply: what to approve and how to answer."""
        answer_type = decision_type(config.agent, config.skill)
        attrs = {
            "type": REQUEST_TYPE,
            "source": config.reply_source,
            "id": derived_id(
                config.agent, config.skill, event["source"], event["id"], "approval", str(self.call)
            ),
            "subject": self.tool,
        }
        answer: dict[str, Any] = {"type": answer_type, KEY_ATTRIBUTE: key}
        answer.update(trace_attributes(event))  # sent along, the answer joins the run's trace
        answer["data"] = {"approved": True}
        data = {
            "tool": self.tool,
            "arguments": self.arguments,
            "reason": self.reason,
            "agent": config.agent,
            "skill": config.skill,
            "event": {"source": event["source"], "id": event["id"], "type": event["type"]},
            "answer": answer,
        }
        return new_event(attrs, data, cause=event)


def is_stale_answer(config: Config, event: CloudEvent) -> bool:
    """An answer to a tool approval that no call waits for (answered already, or expired).

    Answered 202 and logged: run as an ordinary event, it would wake the skill with
    an approval instead of its own input.
    """
    return bool(event["type"] == decision_type(config.agent, config.skill))


def reopen(resumed: Resumed, event: CloudEvent) -> tuple[CloudEvent, Decision] | None:
    """For a resume that answers a tool approval: the original event and the decision."""
    checkpoint = resumed.checkpoint
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(MARKER), dict):
        return None
    record = checkpoint[MARKER]
    data = event.data if isinstance(event.data, dict) else {"data": event.data}
    decision = Decision(
        call=int(record["call"]),
        tool=str(record["tool"]),
        digest=str(record["digest"]),
        approved=data.get("approved") is True,
        data=data,
    )
    return load_event(str(record["event"])), decision
