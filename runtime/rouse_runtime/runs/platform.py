"""Records the platform side writes: what the parking service and local mode's broker saw.

They hold events as structured-mode JSON (the parking queue, dead letters) or
as CloudEvents (local mode's deliveries); these helpers turn one into a record
of its run, and append it without ever failing the caller (the event is parked,
dead-lettered or replayed either way; a missing record is logged).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rouse_runtime.runs.ids import run_of
from rouse_runtime.runs.log import Record, RunLog
from rouse_runtime.store import StoreError

log = logging.getLogger("rouse.runs")


def record_about(
    namespace: str, agent: str, skill: str | None, event: Any, kind: str, **fields: Any
) -> Record:
    """A record of `kind` about an event (a CloudEvent, a structured dict, or its JSON text)."""
    if isinstance(event, str):
        event = json.loads(event)
    ref = {name: str(event.get(name)) for name in ("type", "id", "source")}
    return Record(namespace, agent, run_of(event), kind, skill, ref, fields)


async def append_quietly(runlog: RunLog | None, *records: Record) -> None:
    """Append records; a store failure is logged (what they record happened already)."""
    if runlog is None or not records:
        return
    try:
        await runlog.append(records)
    except StoreError as exc:
        log.warning("run records not written (%s): %s", ", ".join(r.kind for r in records), exc)
