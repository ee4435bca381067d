"""Fan-in joins through real runtime processes, on SQLite and a real redis-server.

A duplicate storm: every part of a join delivered several times at once over
two processes sharing the store; the join runs once, with the results in part
order, and the run's history shows each duplicate as such. A join that fails is
fired again by the broker's retry of the same event, never by another part. A
deadline runs the join with what arrived and what is missing. Malformed join
attributes are refused with 400.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rouse_runtime.runs import open_runlog
from rouse_runtime.runs.history import fold
from rouse_runtime.runs.log import Record
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import wait_until

HANDLERS = Path(__file__).parent / "runtime_handlers"
NS, AGENT = "team-a", "research"
RUN = "run-join-test"


def env(state_url: str, runs: Path, **extra: str) -> dict[str, str]:
    return {
        "ROUSE_HANDLER": "rouse_runs_skills:joiner",
        "ROUSE_AGENT": AGENT,
        "ROUSE_SKILL": "brief",
        "ROUSE_NAMESPACE": NS,
        "ROUSE_STATE_URL": state_url,
        "ROUSE_TEST_RUNS": str(runs),
        "ROUSE_JOIN": "true",
        **extra,
    }


def result(
    rt: RunningRuntime, join: str, part: int, parts: int, *, id_: str | None = None, **data: Any
) -> httpx.Response:
    """Worker `part`'s reply (what the broker delivers to the join skill)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_ or f"{join}-answer-{part}",
        "ce-source": f"/agents/{AGENT}/worker",
        "ce-type": "test.answered",
        "ce-rouserun": RUN,
        "ce-rousejoin": join,
        "ce-rousepart": str(part),
        "ce-rouseparts": str(parts),
        "content-type": "application/json",
    }
    body = json.dumps({"answer": f"answer {part}", **data})
    return httpx.post(rt.url, headers=headers, content=body, timeout=60)


def history(state_url: str) -> list[Record]:
    async def main() -> list[Record]:
        log = open_runlog(state_url)
        try:
            return await log.history(NS, AGENT, RUN)
        finally:
            await log.close()

    return asyncio.run(main())


def joined(runs: Path) -> list[str]:
    return [ln for ln in runs.read_text().splitlines() if ln.startswith("joined ")]


def test_a_duplicate_storm_joins_once_in_part_order(state_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    runs.touch()
    pair = [start_runtime(env(state_url, runs), HANDLERS) for _ in range(2)]
    join = f"join{tmp_path.name.replace('_', '')[-20:]}"
    try:
        deliveries = [(part, copy) for part in (2, 0, 1) for copy in range(4)]  # 3 parts x 4
        barrier = threading.Barrier(len(deliveries))

        def deliver(i: int) -> httpx.Response:
            part, _ = deliveries[i]
            barrier.wait()
            return result(pair[i % 2], join, part, 3)

        with ThreadPoolExecutor(len(deliveries)) as pool:
            answers = list(pool.map(deliver, range(len(deliveries))))
    finally:
        for rt in pair:
            rt.stop()
    fired = [a for a in answers if a.status_code == 200]
    assert {a.status_code for a in answers} <= {200, 202}
    assert len(joined(runs)) == 1
    # every delivery of the firing event answers the join's reply (the stored one)
    assert fired and all(a.json() == fired[0].json() for a in fired)
    assert fired[0].json() == {
        "join": join,
        "results": [{"answer": "answer 0"}, {"answer": "answer 1"}, {"answer": "answer 2"}],
        "missing": [],
    }
    records = [r for r in history(state_url) if (r.fields.get("join") or "") == join
               or (r.fields.get("joins") or {}).get("join") == join
               or r.kind == "duplicate"]  # fmt: skip
    kinds = [r.kind for r in records]
    # two parts collected, one run (the third part), every other delivery a duplicate
    assert kinds.count("join_collected") == 2
    assert kinds.count("ran") + kinds.count("started") == 1
    assert kinds.count("duplicate") + kinds.count("join_duplicate") == 9
    view = fold(history(state_url))
    assert view is not None
    ran = [s for s in view.steps if s.attempts]
    assert [(s.outcome, s.attempts) for s in ran] == [("ok", 1)]


def test_a_failed_join_is_fired_again_by_the_retry_only(state_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    runs.touch()
    rt = start_runtime(env(state_url, runs), HANDLERS)
    join = f"fail{tmp_path.name.replace('_', '')[-20:]}"
    try:
        assert result(rt, join, 0, 2).status_code == 202
        first = result(rt, join, 1, 2, fail_once=True)
        assert first.status_code == 500  # the join failed: the broker retries this event
        late = result(rt, join, 0, 2, id_=f"{join}-other")  # another event for part 0
        assert (late.status_code, late.content) == (202, b"")
        retry = result(rt, join, 1, 2, fail_once=True)
        assert retry.status_code == 200, retry.text
        assert retry.json()["results"] == [
            {"answer": "answer 0"},
            {"answer": "answer 1", "fail_once": True},
        ]
    finally:
        rt.stop()
    assert len(joined(runs)) == 2  # the failed attempt and its retry, nothing else
    kinds = [r.kind for r in history(state_url) if r.event and r.event["id"] == f"{join}-other"]
    assert kinds == ["join_duplicate"]


def test_a_deadline_joins_what_arrived(state_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    runs.touch()
    rt = start_runtime(env(state_url, runs, ROUSE_JOIN_DEADLINE="0.5"), HANDLERS)
    join = f"late{tmp_path.name.replace('_', '')[-20:]}"
    n = iter(range(1000))
    try:
        assert result(rt, join, 0, 3).status_code == 202
        # part 2 keeps arriving (a new event each time) until the deadline has passed
        answer = wait_until(
            lambda: (
                (a := result(rt, join, 2, 3, id_=f"{join}-p2-{next(n)}")).status_code == 200 and a
            ),
            what="the join to run at its deadline",
        )
    finally:
        rt.stop()
    assert answer.json() == {
        "join": join,
        "results": [{"answer": "answer 0"}, None, {"answer": "answer 2"}],
        "missing": [1],
    }


def test_malformed_join_attributes_are_refused(state_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    runs.touch()
    rt = start_runtime(env(state_url, runs), HANDLERS)
    try:
        cases = [("j1", "3", "3", "rousepart='3'"), ("j1", "x", "3", "rousepart='x'"),
                 ("J!", "0", "3", "rousejoin='J!'"), ("j1", "0", "0", "rouseparts='0'")]  # fmt: skip
        for join, part, parts, named in cases:
            headers = {
                "ce-specversion": "1.0", "ce-id": f"bad-{join}-{part}-{parts}", "ce-source": "/w",
                "ce-type": "test.answered", "ce-rousejoin": join, "ce-rousepart": part,
                "ce-rouseparts": parts, "content-type": "application/json",
            }  # fmt: skip
            answer = httpx.post(rt.url, headers=headers, content=b"{}")
            assert answer.status_code == 400, (join, part, parts, answer.text)
            assert named in answer.json()["detail"]
    finally:
        rt.stop()
    assert joined(runs) == []


def deadline_tick(rt: RunningRuntime, join: str, parts: int) -> httpx.Response:
    """The sweeper's event for a join (runs/sweeper.py): no part of its own."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"{join}-deadline",
        "ce-source": f"/agents/{AGENT}/brief/join",
        "ce-type": "dev.rouse.join.deadline",
        "ce-rouserun": RUN,
        "ce-rousejoin": join,
        "ce-rouseparts": str(parts),
        "content-type": "application/json",
    }
    return httpx.post(rt.url, headers=headers, content=b"{}", timeout=60)


def test_the_deadline_event_before_the_deadline_and_for_no_join(
    state_url: str, tmp_path: Path
) -> None:
    """Early (the sweeper's clock ahead): 409, sent again later, the join not run; for a join
    with no parts in the store (expired, never was): acknowledged, nothing run."""
    runs = tmp_path / "runs.txt"
    runs.touch()
    rt = start_runtime(env(state_url, runs, ROUSE_JOIN_DEADLINE="600"), HANDLERS)
    join = f"tick{tmp_path.name.replace('_', '')[-20:]}"
    try:
        assert result(rt, join, 0, 2).status_code == 202
        early = deadline_tick(rt, join, 2)
        assert early.status_code == 409 and early.json()["error"] == "join not due", early.text
        assert deadline_tick(rt, f"{join}x", 2).status_code == 202
        assert result(rt, join, 1, 2).status_code == 200  # the join still completes as usual
    finally:
        rt.stop()
    assert len(joined(runs)) == 1
    kinds = [r.kind for r in history(state_url) if r.fields.get("join", "").startswith(join)]
    assert kinds == ["join_collected", "join_early", "join_ended"], kinds


def test_a_worker_passes_its_join_part_on_without_loading_the_join_module(
    state_url: str, tmp_path: Path
) -> None:
    """The join machinery is a join skill's alone (start-up time is a cold start): a worker's
    reply still carries its part on to the join."""
    runs = tmp_path / "runs.txt"
    worker_env = {**env(state_url, runs), "ROUSE_HANDLER": "rouse_runs_skills:worker"}
    del worker_env["ROUSE_JOIN"]
    rt = start_runtime(worker_env, HANDLERS)
    try:
        answer = result(rt, "j-worker", 1, 3)
    finally:
        rt.stop()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"join_module_loaded": False}
    carried = {k: v for k, v in answer.headers.items() if k.startswith("ce-rouse")}
    assert carried == {
        "ce-rouserun": RUN,
        "ce-rousejoin": "j-worker",
        "ce-rousepart": "1",
        "ce-rouseparts": "3",
    }
