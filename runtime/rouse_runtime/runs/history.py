"""A run's current state, folded from its log (pure: records in, a view out).

Nothing is stored about a run but its records; what `rouse runs list|show`
prints is worked out here each time: the state, and per step (one skill's
handling of one event) its outcome, attempts, cold start, duration, tokens and
cost. The state, by priority:

- `cancelled`: a `cancelled` record (the run was stopped by hand);
- `running`: a step started and not finished (in flight now, or its process
  died and the broker will retry it);
- `suspended`: a step waits for an event (`ctx.wait_for`) not yet come;
- `parked`: an event is parked (daily budget spent) and not replayed yet;
- `failed`: an event was dead-lettered (or dropped after its retries);
- `budget_stopped`: a step was stopped by its per-invocation budget;
- `completed`: otherwise (every step it caused has ended).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rouse_runtime.runs.log import Record

STATES = (
    "cancelled",
    "running",
    "suspended",
    "parked",
    "failed",
    "budget_stopped",
    "completed",
)


@dataclass
class Step:
    """One skill's handling of one event (all its attempts)."""

    skill: str
    event: dict[str, str]
    outcome: str = "running"
    attempts: int = 0
    cold: bool = False
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    duplicates: int = 0
    reply: dict[str, str] | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "skill": self.skill,
            "event": self.event,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "cold": self.cold,
            "seconds": round(self.seconds, 4),
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "costUSD": round(self.cost_usd, 9),
            "duplicates": self.duplicates,
            "reply": self.reply,
            "error": self.error,
        }


@dataclass
class RunView:
    """A run as `rouse runs show` prints it."""

    namespace: str
    agent: str
    run: str
    state: str
    started_at: float
    last_at: float
    root: dict[str, str] | None
    steps: list[Step] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(s.input_tokens + s.output_tokens for s in self.steps)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)

    def summary(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "agent": self.agent,
            "run": self.run,
            "state": self.state,
            "startedAt": self.started_at,
            "lastAt": self.last_at,
            "root": self.root,
            "steps": len(self.steps),
            "tokens": self.tokens,
            "costUSD": round(self.cost_usd, 9),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "steps": [s.as_json() for s in self.steps],
            "history": [r.as_json() for r in self.records],
        }


def _event_key(record: Record) -> tuple[str, str, str]:
    event = record.event or {}
    return (record.skill or "", str(event.get("source", "")), str(event.get("id", "")))


def fold(records: Iterable[Record]) -> RunView | None:
    """The run's view from its records in append order; None for no records."""
    history = list(records)
    if not history:
        return None
    first = history[0]
    steps: dict[tuple[str, str, str], Step] = {}
    open_steps: set[tuple[str, str, str]] = set()
    waiting: set[str] = set()
    parked: set[tuple[str, str, str]] = set()
    cancelled = failed = budget_stopped = False
    root: dict[str, str] | None = None
    for record in history:
        key = _event_key(record)
        fields = record.fields
        kind = record.kind
        if kind in ("started", "ran"):
            if root is None and fields.get("root"):
                root = dict(record.event or {})
            step = steps.setdefault(key, Step(record.skill or "", dict(record.event or {})))
            step.attempts += 1
            step.outcome = "running"
            step.cold = step.cold or bool(fields.get("cold"))
            open_steps.add(key)
            if fields.get("resumes"):
                waiting.discard(str(fields["resumes"]))
        if kind in ("finished", "ran"):
            step = steps.setdefault(key, Step(record.skill or "", dict(record.event or {})))
            _finish(step, fields)
            open_steps.discard(key)
            if step.outcome == "suspended":
                waiting.add(str(fields.get("wait", "")))
            budget_stopped = budget_stopped or step.outcome == "budget_exceeded"
        if kind == "duplicate":
            steps.setdefault(
                key, Step(record.skill or "", dict(record.event or {}))
            ).duplicates += 1
        elif kind == "parked":
            parked.add(key)
        elif kind in ("replayed", "dropped"):
            parked.discard(key)
        elif kind in ("dead_lettered", "delivery_failed"):
            parked.discard(key)
            open_steps.discard(key)
            failed = True
        elif kind == "cancelled":
            cancelled = True
    if root is None and first.event is not None:
        root = dict(first.event)
    state = (
        "cancelled" if cancelled
        else "running" if open_steps
        else "suspended" if waiting
        else "parked" if parked
        else "failed" if failed
        else "budget_stopped" if budget_stopped
        else "completed"
    )  # fmt: skip
    return RunView(
        first.namespace,
        first.agent,
        first.run,
        state,
        first.at,
        history[-1].at,
        root,
        list(steps.values()),
        history,
    )


def _finish(step: Step, fields: Any) -> None:
    step.outcome = str(fields.get("outcome", "ok"))
    step.seconds += float(fields.get("seconds", 0.0))
    usage = fields.get("usage") or {}
    step.input_tokens += int(usage.get("input_tokens", 0))
    step.output_tokens += int(usage.get("output_tokens", 0))
    step.cost_usd += float(usage.get("cost_usd", 0.0))
    reply = fields.get("reply")
    step.reply = dict(reply) if isinstance(reply, dict) else step.reply
    step.error = fields.get("error") or None


def render(run: dict[str, Any]) -> str:
    """`rouse runs show` as text, from the API's JSON (`RunView.as_json`): the summary,
    the steps with their outcomes, then the ordered history."""
    root = run.get("root") or {}
    lines = [
        f"run {run['run']}  {run['namespace']}/{run['agent']}  {run['state']}",
        f"  root: {root.get('type', '?')} {root.get('id', '?')} from {root.get('source', '?')}",
        f"  tokens {run['tokens']}  cost ${run['costUSD']:.6f}",
        "",
        "steps:",
    ]
    for s in run["steps"]:
        extra = []
        if s["cold"]:
            extra.append("cold start")
        if s["duplicates"]:
            extra.append(f"{s['duplicates']} duplicate(s)")
        tokens = s["inputTokens"] + s["outputTokens"]
        if tokens:
            extra.append(f"{tokens} tokens ${s['costUSD']:.6f}")
        if s["reply"]:
            extra.append(f"-> {s['reply'].get('type')}")
        if s["error"]:
            extra.append(s["error"][:120])
        lines.append(
            f"  {s['skill']:<12} {s['event'].get('type', '?'):<34} {s['outcome']:<15}"
            f" x{s['attempts']} {s['seconds'] * 1000:8.1f} ms  {'; '.join(extra)}".rstrip()
        )
    lines += ["", "history:"]
    started = run["startedAt"]
    for r in run["history"]:
        event = r.get("event") or {}
        what = f"{event.get('type', '')} {event.get('id', '')}".strip()
        detail = {k: v for k, v in r.items() if k not in _SHOWN}
        shown = " ".join(f"{k}={_short(v)}" for k, v in detail.items())
        lines.append(
            f"  {r['seq']:>4} +{r['at'] - started:8.3f}s  {r['kind']:<13} {r['skill'] or '-':<12}"
            f" {what}  {shown}".rstrip()
        )
    return "\n".join(lines)


_SHOWN = frozenset({"seq", "at", "kind", "skill", "event", "usage"})


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
