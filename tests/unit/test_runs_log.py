"""The run log on both stores (SQLite file and a real redis-server), and the fold of a history.

Append order, the listing (by agent, since), stop marks and the kill switch,
retention (a whole run goes, never its head), scoping by namespace and agent,
and a run's state folded from what its records say.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rouse_runtime.runs import RUN_ATTRIBUTE, InvalidRunIdError, check_run_id, run_of
from rouse_runtime.runs.history import fold
from rouse_runtime.runs.ids import root_run_id
from rouse_runtime.runs.log import KILL_SWITCH, Record, RunLog, open_runlog, runlog_on
from rouse_runtime.store import open_store

EVENT = {"type": "t.created", "id": "e-1", "source": "/s"}


def with_log(state_url: str, body: Callable[[RunLog], Awaitable[Any]], **kwargs: Any) -> Any:
    async def main() -> Any:
        runlog = open_runlog(state_url, **kwargs)
        try:
            return await body(runlog)
        finally:
            await runlog.close()

    return asyncio.run(main())


def rec(run: str, kind: str, *, agent: str = "shop", ns: str = "team-a", at: float | None = None,
        skill: str = "triage", **fields: Any) -> Record:  # fmt: skip
    return Record(ns, agent, run, kind, skill, EVENT, fields, at if at is not None else time.time())


def test_history_is_in_append_order_and_scoped(state_url: str) -> None:
    run = f"r{time.time_ns()}"

    async def body(log: RunLog) -> Any:
        await log.append([rec(run, "started", cold=True), rec(run, "emitted", n=1)])
        await log.append([rec(run, "finished", outcome="ok", status=200)])
        await log.append([rec(run, "started", ns="team-b")])  # same agent and run, other team
        return (
            await log.history("team-a", "shop", run),
            await log.history("team-b", "shop", run),
            await log.history("team-a", "other", run),
        )

    mine, theirs, none = with_log(state_url, body)
    assert [(r.seq, r.kind, r.fields) for r in mine] == [
        (1, "started", {"cold": True}),
        (2, "emitted", {"n": 1}),
        (3, "finished", {"outcome": "ok", "status": 200}),
    ]
    assert [r.kind for r in theirs] == ["started"]
    assert none == []


def test_listing_by_agent_and_since(state_url: str) -> None:
    agent = f"a{time.time_ns() % 10**9}"
    now = time.time()

    async def body(log: RunLog) -> Any:
        await log.append([rec("old", "started", agent=agent, at=now - 600)])
        await log.append([rec("new", "started", agent=agent, at=now - 5)])
        await log.append([rec("newest", "started", agent=agent, at=now)])
        await log.append([rec("elsewhere", "started", agent=agent + "x", at=now)])
        every = await log.runs(agent=agent)
        recent = await log.runs(agent=agent, since=now - 60)
        one = await log.runs(agent=agent, limit=1)
        return every, recent, one

    every, recent, one = with_log(state_url, body)
    assert [k.run for k in every] == ["newest", "new", "old"]
    assert [k.run for k in recent] == ["newest", "new"]
    assert [k.run for k in one] == ["newest"]


def test_cancel_marks_and_kill_switch(state_url: str) -> None:
    agent = f"k{time.time_ns() % 10**9}"

    async def body(log: RunLog) -> Any:
        first = await log.cancel("team-a", agent, "r1", "alice")
        again = await log.cancel("team-a", agent, "r1", "bob")
        one = await log.stopped("team-a", agent)
        await log.kill("team-a", agent, "carol")
        killed = await log.stopped("team-a", agent)
        lifted = await log.kill("team-a", agent, "carol", on=False)
        after = await log.stopped("team-a", agent)
        other_team = await log.stopped("team-b", agent)
        history = await log.history("team-a", agent, "r1")
        return first, again, one, killed, lifted, after, other_team, history

    first, again, one, killed, lifted, after, other_team, history = with_log(state_url, body)
    assert (first, again) == (True, False)
    assert (one.runs, one.killed, one.covers("r1"), one.covers("r2")) == (
        frozenset({"r1"}),
        False,
        True,
        False,
    )
    assert (killed.killed, killed.covers("r2"), killed.reason("r2")) == (True, True, "kill switch")
    assert lifted is True
    assert (after.killed, after.runs) == (False, frozenset({"r1"}))
    assert (other_team.killed, other_team.runs) == (False, frozenset())
    # the cancel is in the run's history once, saying who
    assert [(r.kind, r.fields) for r in history] == [("cancelled", {"by": "alice"})]
    assert KILL_SWITCH not in after.runs


def test_retention_removes_whole_idle_runs(state_url: str) -> None:
    agent = f"p{time.time_ns() % 10**9}"
    now = time.time()

    async def body(log: RunLog) -> Any:
        # an old run, and a long one whose head is old but whose tail is fresh
        await log.append([rec("idle", "started", agent=agent, at=now - 7200)])
        await log.append([rec("long", "started", agent=agent, at=now - 7200)])
        await log.append([rec("long", "finished", agent=agent, at=now)])
        await log.prune(now)
        return (
            [k.run for k in await log.runs(agent=agent)],
            [r.kind for r in await log.history("team-a", agent, "long")],
        )

    listed, long_history = with_log(state_url, body, retention=3600)
    assert listed == ["long"]
    assert long_history == ["started", "finished"]


def test_staged_records_join_the_store_write(tmp_path: Any) -> None:
    """On SQLite the runtime's records commit in the state store's group commit."""
    url = f"sqlite:///{tmp_path}/state.db"

    async def main() -> list[str]:
        store = open_store(url, sole_writer=True)
        log = runlog_on(store, url)
        claim = await store.claim("k", "me", 30)
        assert claim.state == "claimed"
        staged = [log.stage(rec("r", "started")), log.stage(rec("r", "finished"))]
        await store.complete("k", "me", {"status": 202}, 60)
        await asyncio.gather(*staged)
        await store.close()
        reader = open_runlog(url)
        try:
            return [r.kind for r in await reader.history("team-a", "shop", "r")]
        finally:
            await reader.close()

    # both in one commit: written as one `ran` record (no reader could see `started` alone)
    assert asyncio.run(main()) == ["ran"]


def test_run_ids() -> None:
    assert run_of({"source": "/s", "id": "1"}) == root_run_id("/s", "1")
    assert run_of({"source": "/s", "id": "1", RUN_ATTRIBUTE: "order-7"}) == "order-7"
    assert check_run_id("order-7") == "order-7"
    for bad in ("", "-x", "UPPER", "a" * 65, "a/b", 7):
        with pytest.raises(InvalidRunIdError, match="rouserun="):
            check_run_id(bad)


def _fold(*records: Record) -> str:
    view = fold(records)
    assert view is not None
    return view.state


def test_fold_states() -> None:
    started, ok = rec("r", "started", root=True), rec("r", "finished", outcome="ok", status=200)
    assert _fold(started) == "running"
    assert _fold(started, ok) == "completed"
    assert _fold(started, rec("r", "finished", outcome="suspended", wait="t/k")) == "suspended"
    approval = {"type": "t.approved", "id": "a", "source": "/h"}
    resumed = Record("team-a", "shop", "r", "started", "triage", approval, {"resumes": "t/k"})
    resumed_ok = Record("team-a", "shop", "r", "finished", "triage", approval, {"outcome": "ok"})
    suspended = rec("r", "finished", outcome="suspended", wait="t/k")
    assert _fold(started, suspended, resumed) == "running"
    assert _fold(started, suspended, resumed, resumed_ok) == "completed"
    assert _fold(started, ok, rec("r", "parked")) == "parked"
    assert _fold(started, ok, rec("r", "parked"), rec("r", "replayed")) == "completed"
    assert _fold(started, ok, rec("r", "dead_lettered")) == "failed"
    assert _fold(started, rec("r", "finished", outcome="budget_exceeded")) == "budget_stopped"
    assert _fold(started, rec("r", "cancelled")) == "cancelled"
    assert fold([]) is None


def test_fold_steps_count_attempts_duplicates_and_spend() -> None:
    usage = {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.001}
    reply = {"type": "t.triaged", "id": "x"}
    view = fold(
        [
            rec("r", "started", root=True, cold=True),
            rec("r", "finished", outcome="error", status=500, error="skill failed: boom"),
            rec("r", "started"),
            rec("r", "finished", outcome="ok", status=200, usage=usage, reply=reply),
            rec("r", "duplicate", answer="stored", status=200),
        ]
    )
    assert view is not None
    (step,) = view.steps
    assert (step.attempts, step.outcome, step.cold, step.duplicates) == (2, "ok", True, 1)
    assert (step.input_tokens, step.output_tokens, step.reply) == (
        100,
        20,
        {"type": "t.triaged", "id": "x"},
    )
    assert (view.tokens, view.root) == (120, EVENT)
