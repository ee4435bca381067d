"""The runtime's side of runs: what each invocation appends, and cancellation reaching it.

`Recorder` is held by the skill server (one per process). Per event it:

- reads the run id (`run_for`: the `rouserun` attribute, validated, or the
  event's own), refusing a malformed one with 400 naming the attribute;
- drops the event when its run is cancelled or the agent's kill switch is on
  (`stop_reason`; the answer is 202, acknowledged, never retried, with a
  `dropped` record);
- stages `started` / `finished` / `duplicate` / `emitted` records into the state
  store's existing write of that event (see log.py: no durable write of its own);
- while a skill runs, watches the stop marks (`StopWatch`) and stops it when its
  run is cancelled: `ctx.cancelled` turns true, the next ctx helper raises
  `Cancelled`, and an `async def` skill's task is cancelled at its next await.

Record kinds written here: started, finished, duplicate, dropped, emitted, and
whatever a skill notes with `ctx.note(kind, ...)` (e.g. `tool_call`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cloudevents.http import CloudEvent

from rouse_runtime.budget import Budget
from rouse_runtime.events import EventError
from rouse_runtime.runs.ids import RUN_ATTRIBUTE, InvalidRunIdError, check_run_id, root_run_id
from rouse_runtime.runs.log import Record, RunLog, Stopped
from rouse_runtime.store import StoreError

log = logging.getLogger("rouse.runs")

STOP_POLL_SECONDS = 1.0  # how stale a process's view of the stop marks may be
RESERVED_KINDS = frozenset(
    {"started", "finished", "ran", "duplicate", "dropped", "emitted", "fanned_out", "cancelled",
     "parked", "replayed", "dead_lettered", "delivery_failed", "retry", "compensation",
     "join_collected", "join_duplicate", "join_late", "join_early", "join_ended",
     "join_deadline"}
)  # fmt: skip


class Cancelled(BaseException):
    """Raised by ctx helpers once the run is cancelled (a BaseException: `except Exception`
    in a skill does not swallow it)."""


def event_ref(event: CloudEvent) -> dict[str, str]:
    """What a record says about an event: its type, id and source."""
    return {"type": str(event["type"]), "id": str(event["id"]), "source": str(event["source"])}


class RunHandle:
    """One invocation's run: its id, its notes, and whether it was stopped."""

    __slots__ = ("_recorder", "event", "id", "ref", "stop_reason", "task", "wait")

    def __init__(self, recorder: Recorder, run: str, event: CloudEvent) -> None:
        self._recorder = recorder
        if recorder.loop is None:
            recorder.loop = asyncio.get_running_loop()  # made on the loop, for each event
        self.id = run
        self.event = event
        self.ref = event_ref(event)  # what its records say about the event, made once
        self.stop_reason: str | None = None
        self.task: asyncio.Task[Any] | None = None
        self.wait: str | None = None  # `<type>/<key>` once the skill suspended

    def note(self, kind: str, fields: Mapping[str, Any]) -> None:
        """A skill's own record (`ctx.note`): any kind but the platform's."""
        if kind in RESERVED_KINDS or not kind.replace("_", "").replace(".", "").isalnum():
            raise ValueError(
                f"ctx.note: kind {kind!r} must be a word of letters, digits, '_' or '.', and not"
                f" one of the platform's own ({', '.join(sorted(RESERVED_KINDS))})"
            )
        self.record(kind, dict(fields))

    def record(self, kind: str, fields: dict[str, Any]) -> None:
        """Stage a record about this invocation's event (thread-safe: a `def` skill's notes
        are handed to the loop)."""
        loop = self._recorder.loop
        if loop is not None and not _on_loop(loop):
            loop.call_soon_threadsafe(self._recorder.stage, self.ref, self.id, kind, fields)
            return
        self._recorder.stage(self.ref, self.id, kind, fields)

    def stop(self, reason: str, *, cancel_task: bool) -> None:
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if cancel_task and self.task is not None and not self.task.done():
            self.task.cancel(f"run {self.id} stopped: {reason}")

    def check(self) -> None:
        """Raise Cancelled once the run is stopped (called by every ctx helper)."""
        if self.stop_reason is not None:
            raise Cancelled(f"run {self.id} stopped: {self.stop_reason}")


class StopWatch:
    """The agent's stop marks as last read, and the in-flight runs to stop when they change."""

    def __init__(
        self,
        read: Callable[[], Awaitable[Stopped]],
        *,
        interval: float = STOP_POLL_SECONDS,
        on_read: Callable[[float], None] | None = None,
    ) -> None:
        self._read = read
        self.interval = interval
        self._on_read = on_read  # told the wall-clock time each successful read began
        self._current = Stopped()
        self._fresh_until = 0.0
        self._refreshing: asyncio.Future[Stopped] | None = None
        self._running: dict[int, tuple[RunHandle, bool]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def current(self) -> Stopped:
        """The stop marks, read again when older than `interval` (one read in flight at a time)."""
        if time.monotonic() < self._fresh_until:
            return self._current
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
        refreshing = self._refreshing
        try:
            return await asyncio.shield(refreshing)
        finally:
            if self._refreshing is refreshing and refreshing.done():
                self._refreshing = None

    async def read_now(self) -> Stopped:
        """The marks read now (and cached)."""
        self._fresh_until = 0.0
        return await self.current()

    async def _refresh(self) -> Stopped:
        # A view is as old as the start of its read: marks set after that may be missing.
        began, began_at = time.monotonic(), time.time()
        try:
            self._current = await self._read()
        except StoreError as exc:  # keep the last view; the event path must not fail on it
            log.warning("run stop marks not read: %s", exc)
            self._fresh_until = time.monotonic() + self.interval
            return self._current
        self._fresh_until = began + self.interval
        if self._on_read is not None:
            self._on_read(began_at)
        return self._current

    def track(self, handle: RunHandle, *, cancel_task: bool) -> None:
        """Stop handle when its run is stopped, until `untrack` (while the skill runs)."""
        self._running[id(handle)] = (handle, cancel_task)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    def untrack(self, handle: RunHandle) -> None:
        self._running.pop(id(handle), None)

    async def _poll(self) -> None:
        idle = 0
        while idle < 10:  # stays while skills run, ends after ten idle intervals
            await asyncio.sleep(self.interval)
            if not self._running:
                idle += 1
                continue
            idle = 0
            stopped = await self.current()
            for handle, cancel_task in list(self._running.values()):
                if stopped.covers(handle.id):
                    handle.stop(stopped.reason(handle.id), cancel_task=cancel_task)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller


class Recorder:
    """The runtime's run records and stop checks for one (namespace, agent, skill)."""

    def __init__(
        self,
        runlog: Callable[[], RunLog],
        namespace: str,
        agent: str,
        skill: str,
        *,
        on_stops_read: Callable[[float], None] | None = None,
    ) -> None:
        self._runlog = runlog
        self.namespace = namespace
        self.agent = agent
        self.skill = skill
        self.watch = StopWatch(self._read_stops, on_read=on_stops_read)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._watched: asyncio.Future[None] | None = None

    async def _read_stops(self) -> Stopped:
        return await self._runlog().stopped(self.namespace, self.agent)

    @staticmethod
    def run_for(event: CloudEvent) -> str:
        """The event's run; 400 (EventError) for a malformed `rouserun`."""
        value = event.get(RUN_ATTRIBUTE)
        if value is not None:
            try:
                return check_run_id(value)
            except InvalidRunIdError as exc:
                raise EventError(400, "invalid attribute", str(exc)) from None
        # No `rouserun`: a root event, its run derived as run_of does (the attribute read once).
        return root_run_id(str(event["source"]), str(event["id"]))

    async def stop_reason(self, run: str, *, fresh: bool = False) -> str | None:
        """Why an event of run must be dropped now (cancelled, kill switch), or None.

        `fresh`: read the marks now rather than from the cache (at most `interval`
        old), where acting on a stale answer could not be undone (a resume).
        """
        stopped = await (self.watch.read_now() if fresh else self.watch.current())
        return stopped.reason(run) if stopped.covers(run) else None

    def stage(
        self, event: CloudEvent | dict[str, str], run: str, kind: str, fields: dict[str, Any]
    ) -> Awaitable[None] | None:
        """Queue a record about event (or its `event_ref`); a store failure is logged, never
        raised (what it records happened already)."""
        ref = event if isinstance(event, dict) else event_ref(event)
        record = Record(self.namespace, self.agent, run, kind, self.skill, ref, fields)
        try:
            staged = self._runlog().stage(record)
        except StoreError as exc:
            log.warning("run %s: %s record not written: %s", run, kind, exc)
            return None
        if not isinstance(staged, asyncio.Future) and asyncio.iscoroutine(staged):
            staged = asyncio.ensure_future(staged)  # (a group commit's future is the usual)
        if isinstance(staged, asyncio.Future) and staged is not self._watched:
            self._watched = staged  # records of one commit share it: one callback per commit
            staged.add_done_callback(_log_failure)
        return staged


def finished_fields(
    outcome: Any, seconds: float, budget: Budget, handle: RunHandle
) -> dict[str, Any]:
    """The `finished` record of an invocation: outcome, status, duration, usage, reply or error."""
    fields: dict[str, Any] = {
        "outcome": outcome.kind,
        "status": outcome.status,
        "seconds": round(seconds, 5),
    }
    usage = budget.usage
    if usage.steps or usage.tool_calls or usage.input_tokens or usage.output_tokens:
        fields["usage"] = usage.as_dict()
    if outcome.event is not None:
        fields["reply"] = {"type": str(outcome.event["type"]), "id": str(outcome.event["id"])}
    if outcome.error is not None:
        fields["error"] = f"{outcome.error['error']}: {outcome.error['detail']}"[:300]
    if handle.wait is not None:
        fields["wait"] = handle.wait
    if handle.stop_reason is not None:
        fields["reason"] = handle.stop_reason
    return fields


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("run record not written: %s", exc)
