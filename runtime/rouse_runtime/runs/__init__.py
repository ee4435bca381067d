"""Runs: an event-sourced history of everything one incoming event caused.

A *run* starts with an event that carries no run id; every event it causes
(replies, `ctx.emit`, compensations) carries the run id forward in the
`rouserun` CloudEvents extension attribute, so every component that sees one of
them (the runtime, the parking service, local mode's broker) appends what it saw
to the run's log. The log is append-only and never rewritten; a run's state is
folded from it (`history.fold`). Retention is bounded (`ROUSE_RUNS_RETENTION`).

The public surface, for other parts and helpers:

- `RUN_ATTRIBUTE`, `run_of(event)`: the run an event belongs to (its attribute,
  or, for the first event of a run, an id derived from its `source` and `id`,
  so every component names it the same without talking to each other).
- `Record`: one transition; `open_runlog(url)` / `runlog_on(store, url)`: the
  log in the state store; `RunLog.append`, `.stage` (hot path), `.history`,
  `.runs`, `.cancel`, `.kill`, `.stopped`.
- `ctx.run_id` and `ctx.note(kind, **fields)` in a skill (e.g. an MCP tool call
  or a front-door request's progress lands in the run's history).
"""

from __future__ import annotations

from rouse_runtime.runs.ids import RUN_ATTRIBUTE, InvalidRunIdError, check_run_id, run_of
from rouse_runtime.runs.log import Record, RunLog, Stopped, open_runlog, runlog_on

__all__ = [
    "RUN_ATTRIBUTE",
    "InvalidRunIdError",
    "Record",
    "RunLog",
    "Stopped",
    "check_run_id",
    "open_runlog",
    "run_of",
    "runlog_on",
]
