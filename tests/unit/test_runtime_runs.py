"""Runs through real runtime processes over loopback HTTP, on SQLite and a real redis-server.

What an invocation appends to its run, the run id carried onto the reply, a
malformed `rouserun` refused, a duplicate storm over two processes recorded as
duplicates (the skill runs once), and cancellation: a cancelled run's in-flight
skill stops (async and plain def), its later events are dropped with a record,
and the agent's kill switch drops everything until it is lifted; /metrics says when
the process last read those stop marks.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from rouse_runtime.runs import RUN_ATTRIBUTE, Record, open_runlog
from rouse_runtime.runs.history import fold
from rouse_runtime.runs.ids import root_run_id
from rouse_runtime.runs.log import RunLog
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import wait_until

HANDLERS = Path(__file__).parent / "runtime_handlers"
NS, AGENT = "team-a", "shop"
SOURCE = "/tests/runs"


def env(state_url: str, runs: Path, handler: str = "rouse_runs_skills:work") -> dict[str, str]:
    return {
        "ROUSE_HANDLER": handler,
        "ROUSE_AGENT": AGENT,
        "ROUSE_SKILL": "work",
        "ROUSE_NAMESPACE": NS,
        "ROUSE_STATE_URL": state_url,
        "ROUSE_TEST_RUNS": str(runs),
    }


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    path = tmp_path / "runs.txt"
    path.touch()
    return path


@pytest.fixture
def runtime(state_url: str, runs: Path) -> Iterator[RunningRuntime]:
    rt = start_runtime(env(state_url, runs), HANDLERS)
    yield rt
    rt.stop()


def post(rt: RunningRuntime, id_: str, data: Any = None, **ext: str) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": SOURCE,
        "ce-type": "test.work",
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in ext.items()},
    }
    return httpx.post(rt.url, headers=headers, content=json.dumps(data or {}), timeout=60)


def call(state_url: str, method: str, *args: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        log: RunLog = open_runlog(state_url)
        try:
            return await getattr(log, method)(*args, **kwargs)
        finally:
            await log.close()

    return asyncio.run(main())


def history(state_url: str, run: str) -> list[Record]:
    records: list[Record] = call(state_url, "history", NS, AGENT, run)
    return records


def lines(runs: Path, what: str) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in runs.read_text().splitlines()
        if line.startswith(what + " ")
    ]


def test_an_invocation_is_recorded_and_its_run_carried_on(
    runtime: RunningRuntime, state_url: str
) -> None:
    event_id = f"e-{id(runtime)}"
    response = post(runtime, event_id)
    assert response.status_code == 200, response.text
    run = root_run_id(SOURCE, event_id)
    assert response.headers["ce-rouserun"] == run
    assert response.json() == {"done": event_id, "run": run}
    # started and finished fell into one commit: one `ran` record, then the skill's note
    records = history(state_url, run)
    assert [r.kind for r in records] == ["ran", "tool_call"]
    ran, note = records
    assert (ran.skill, ran.event) == (
        "work",
        {"type": "test.work", "id": event_id, "source": SOURCE},
    )
    assert {k: ran.fields[k] for k in ("cold", "root", "outcome", "status", "reply")} == {
        "cold": True,
        "root": True,
        "outcome": "ok",
        "status": 200,
        "reply": {"type": "dev.rouse.work.completed", "id": response.headers["ce-id"]},
    }
    assert note.fields == {"tool": "crm.lookup", "ok": True}
    # the next step of the chain: an event carrying the run goes on in it (not a root)
    nxt = post(runtime, f"{event_id}-next", **{RUN_ATTRIBUTE: run})
    assert nxt.headers["ce-rouserun"] == run
    records = history(state_url, run)
    assert [r.kind for r in records] == ["ran", "tool_call", "ran", "tool_call"]
    assert ("cold" in records[2].fields, "root" in records[2].fields) == (False, False)
    view = fold(records)
    assert view is not None
    assert (view.state, [s.event["id"] for s in view.steps]) == (
        "completed",
        [event_id, f"{event_id}-next"],
    )


def test_a_malformed_run_id_is_refused(runtime: RunningRuntime) -> None:
    response = post(runtime, "bad-run", **{RUN_ATTRIBUTE: "Not_A_Run"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid attribute"
    assert "rouserun='Not_A_Run' is not a run id" in response.json()["detail"]


def test_a_duplicate_storm_over_two_processes_runs_once(
    state_url: str, runs: Path, tmp_path: Path
) -> None:
    """The same event delivered 12 times at once over two processes sharing the store."""
    pair = [start_runtime(env(state_url, runs), HANDLERS) for _ in range(2)]
    try:
        event_id = f"storm-{tmp_path.name}"
        barrier = threading.Barrier(12)

        def deliver(i: int) -> int:
            barrier.wait()
            return post(pair[i % 2], event_id, {"slow": 0.3}).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(deliver, range(12)))
    finally:
        for rt in pair:
            rt.stop()
    assert statuses == [200] * 12
    assert lines(runs, "ran") == [event_id]
    records = history(state_url, root_run_id(SOURCE, event_id))
    kinds = [r.kind for r in records]
    # the slow skill spans commits: its start and its end are two records
    assert (kinds.count("started"), kinds.count("finished"), kinds.count("duplicate")) == (1, 1, 11)
    answers = {r.fields["answer"] for r in records if r.kind == "duplicate"}
    assert answers <= {"in flight here", "stored"}
    view = fold(records)
    assert view is not None
    assert [(s.attempts, s.duplicates, s.outcome) for s in view.steps] == [(1, 11, "ok")]


@pytest.mark.parametrize("handler", ["rouse_runs_skills:work", "rouse_runs_skills:sync_work"])
def test_cancel_stops_the_skill_in_flight_and_drops_later_events(
    state_url: str, runs: Path, tmp_path: Path, handler: str
) -> None:
    rt = start_runtime(env(state_url, runs, handler), HANDLERS)
    try:
        event_id = f"hold-{tmp_path.name}"
        run = root_run_id(SOURCE, event_id)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, rt, event_id, {"hold": True})
            wait_until(lambda: event_id in lines(runs, "holding"), what="the skill to run")
            assert call(state_url, "cancel", NS, AGENT, run, "test") is True
            answer = pending.result(timeout=30)
        # acknowledged (never retried), no reply
        assert (answer.status_code, answer.content) == (202, b"")
        # a later event of the run (a reply of another step, a retry) is dropped with a record
        later = post(rt, f"{event_id}-later", **{RUN_ATTRIBUTE: run})
        assert (later.status_code, later.content) == (202, b"")
        assert lines(runs, "ran") == [event_id]
        records = history(state_url, run)
        by_kind = {r.kind: r for r in records}
        assert by_kind["finished"].fields["outcome"] == "cancelled"
        assert by_kind["finished"].fields["reason"] == "run cancelled"
        assert by_kind["cancelled"].fields == {"by": "test"}
        assert (by_kind["dropped"].event or {})["id"] == f"{event_id}-later"
        view = fold(records)
        assert view is not None and view.state == "cancelled"
        metrics = httpx.get(f"{rt.url}/metrics").text
        assert (
            'rouse_invocations_total{agent="shop",outcome="cancelled",skill="work"} 2.0' in metrics
        )
    finally:
        rt.stop()


def test_the_kill_switch_drops_every_event_until_lifted(
    runtime: RunningRuntime, state_url: str, runs: Path, tmp_path: Path
) -> None:
    assert call(state_url, "kill", NS, AGENT, "test") is True
    n = iter(range(1000))

    def dropped() -> bool:
        event_id = f"k-{tmp_path.name}-{next(n)}"
        answer = post(runtime, event_id)
        kinds = [r.kind for r in history(state_url, root_run_id(SOURCE, event_id))]
        return answer.status_code == 202 and kinds == ["dropped"]

    wait_until(dropped, what="the kill switch to be seen")  # within the 1 s poll
    ran_before = len(lines(runs, "ran"))
    assert dropped()
    assert len(lines(runs, "ran")) == ran_before
    assert call(state_url, "kill", NS, AGENT, "test", on=False) is True
    wait_until(lambda: post(runtime, f"k-{tmp_path.name}-{next(n)}").status_code == 200,
               what="events to run again")  # fmt: skip


def stop_marks_read_at(rt: RunningRuntime) -> float:
    """The runtime's `rouse_stop_marks_read_timestamp_seconds` on /metrics."""
    text = httpx.get(f"{rt.url}/metrics", timeout=10).text
    [sample] = [
        line
        for line in text.splitlines()
        if line.startswith("rouse_stop_marks_read_timestamp_seconds{")
    ]
    return float(sample.split()[-1])


def test_metrics_say_when_the_stop_marks_were_last_read(
    runtime: RunningRuntime, state_url: str, tmp_path: Path
) -> None:
    """Once the gauge is past the moment the kill switch was set, the process's next event is
    dropped: what a test (or an operator) waits on instead of a fixed STOP_POLL_SECONDS."""
    assert stop_marks_read_at(runtime) == 0.0  # not read before the first event
    before = time.time()
    assert post(runtime, f"m-{tmp_path.name}-first").status_code == 200
    assert before <= stop_marks_read_at(runtime) <= time.time()
    assert call(state_url, "kill", NS, AGENT, "test") is True
    try:
        killed = time.time()
        n = iter(range(1000))

        def read_since_the_kill() -> bool:
            # an event reads the marks again once its process's view is STOP_POLL_SECONDS old
            post(runtime, f"m-{tmp_path.name}-{next(n)}")
            return stop_marks_read_at(runtime) >= killed

        wait_until(read_since_the_kill, what="the stop marks read since the kill")
        event_id = f"m-{tmp_path.name}-after"
        assert post(runtime, event_id).status_code == 202
        assert [r.kind for r in history(state_url, root_run_id(SOURCE, event_id))] == ["dropped"]
    finally:
        assert call(state_url, "kill", NS, AGENT, "test", on=False) is True


def test_a_compensation_in_a_cancelled_run_runs_to_its_end(
    runtime: RunningRuntime, state_url: str, runs: Path, tmp_path: Path
) -> None:
    """Undoing is what a cancel asks for: a compensation event of a cancelled run is not
    dropped, and a slow one is not stopped in flight by the run's stop mark either."""
    run = f"undo-{tmp_path.name.replace('_', '-')[-30:]}"
    assert call(state_url, "cancel", NS, AGENT, run, "test") is True
    answer = post(runtime, f"{run}-undo", {"slow": 2.5}, rouserun=run, rousecompensates="book/e1")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"done": f"{run}-undo", "run": run}
    [finished] = [r for r in history(state_url, run) if r.kind in ("finished", "ran")]
    assert finished.fields["outcome"] == "ok"
