"""Local mode runs the operator's policies on local processes: warm pool and daily budget.

Real skill runtime processes, a real OpenAI-compatible server for the tokens, the
real ledger and parking queue in the state dir's SQLite file. The budget reset is
seen by moving the policies' clock to the next day (LocalMode in this process);
the rest drives a real `rouse dev` process with a short `--eval-interval`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from localdev import LocalDev, rouse, start_dev, write_agent
from rouse_runtime.local.dev import DevOptions, LocalMode
from rouse_runtime.local.view import View
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

EVAL = 0.2  # seconds between two policy evaluations
TOKENS_PER_CALL = 120  # the fake model's usage: 100 prompt + 20 completion
DAILY_TOKENS = 100  # one `spend` event spends the day


def policy_agent(
    work: Path, llm: FakeLLM, *, name: str = "pol", on_exhausted: str = "park", tokens: int = 100
) -> dict[str, Any]:
    def skill(skill_name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": skill_name,
            "handler": f"e2e_skills:{skill_name}",
            "events": [{"type": f"e2e.{skill_name}"}],
            "reply": {"type": f"e2e.{skill_name}.done"},
            **extra,
        }

    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "image": "example.invalid/pol:1",
            "env": [
                {"name": "E2E_WORK", "value": str(work)},
                {"name": "ROUSE_LLM_BASE_URL", "value": llm.url},
                {"name": "ROUSE_LLM_MODEL", "value": "test-model"},
            ],
            "budget": {"daily": {"tokens": tokens}, "onExhausted": on_exhausted},
            "skills": [
                skill("spend", scaling={"max": 1, "retention": "30s"}),
                # One process, one event at a time: it runs events in the order it gets them.
                skill(
                    "record",
                    concurrency=1,
                    scaling={"max": 1, "retention": "30s"},
                    delivery={"retries": 0, "deadLetter": True},
                ),
            ],
        },
    }


def records(work: Path) -> list[dict[str, Any]]:
    path = work / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def post(url: str, event_type: str, data: Any, event_id: str | None = None) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-type": event_type,
        "ce-source": "/e2e/policies",
        "ce-id": event_id or f"{event_type}-{json.dumps(data, sort_keys=True)}",
        "content-type": "application/json",
    }
    return httpx.post(f"{url}/", headers=headers, content=json.dumps(data), timeout=10)


def skills(url: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{url}/skills", timeout=10).json()
    return found


def skill(url: str, name: str) -> dict[str, Any]:
    return next(s for s in skills(url)["skills"] if s["skill"] == name)


def spend_the_day(url: str, logs: Any) -> dict[str, Any]:
    """Send one `spend` event and wait until the policy suspends the agent."""
    response = post(url, "e2e.spend", {"n": 0})
    assert response.status_code == 202, response.text

    def suspended() -> dict[str, Any] | None:
        found = skills(url)
        return found if found["phase"] == "Suspended" else None

    return wait_until(suspended, timeout=60, what=f"the agent to be suspended\n{logs()}")


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(prompt_tokens=100, completion_tokens=20)
    yield server
    server.stop()


# -- the budget, with the policies' clock moved to the next day -------------------------------


@dataclass
class Clock:
    """The policies' clock: real time plus a shift the test moves."""

    shift: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.shift


@pytest.fixture
def in_process(
    tmp_path: Path, llm: FakeLLM
) -> Iterator[tuple[LocalMode, io.StringIO, Clock, Path]]:
    work = tmp_path / "work"
    work.mkdir()
    clock = Clock()
    options = DevOptions(
        agent_file=write_agent(tmp_path / "agent", policy_agent(work, llm)),
        port=0,
        state_dir=tmp_path / "state",
        eval_interval=EVAL,
        now=clock.now,
    )
    with serving(options) as (mode, out):
        yield mode, out, clock, work


@contextlib.contextmanager
def serving(options: DevOptions) -> Iterator[tuple[LocalMode, io.StringIO]]:
    """`rouse dev`'s LocalMode in a thread of this process (its skills are real processes)."""
    out = io.StringIO()
    mode = LocalMode.create(options, View(stream=out, tty=False))
    mode.bind()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(mode.serve(),), daemon=True)
    thread.start()
    try:
        yield mode, out
    finally:
        loop.call_soon_threadsafe(mode.request_exit)
        thread.join(timeout=30)
        assert not thread.is_alive(), "LocalMode did not stop"
        loop.close()


def test_spent_budget_parks_events_and_the_reset_replays_them_in_order(
    in_process: tuple[LocalMode, io.StringIO, Clock, Path], llm: FakeLLM
) -> None:
    mode, out, clock, work = in_process
    url = mode.broker_url.rstrip("/")

    state = spend_the_day(url, out.getvalue)
    assert {k: state["budget"][k] for k in ("action", "tokensToday", "reason")} == {
        "action": "park",
        "tokensToday": TOKENS_PER_CALL,
        "reason": "TokensExhausted",
    }

    sent = []
    for n in range(5):
        response = post(url, "e2e.record", {"n": n}, event_id=f"rec-{n}")
        assert response.status_code == 202, response.text
        assert response.json()["parked"] is True
        assert response.json()["routedTo"] == ["record"]
        sent.append(f"rec-{n}")

    # Parked, in order, durable in the parking queue; the skill never ran.
    parked = httpx.get(f"{url}/parked", params={"agent": "pol"}, timeout=10).json()["items"]
    assert [(p["kind"], p["namespace"], p["skill"], p["eventId"]) for p in parked] == [
        ("park", "default", "record", event_id) for event_id in sent
    ]
    recorder = skill(url, "record")
    assert (recorder["parked"], recorder["delivered"], recorder["processes"]) == (5, 0, [])
    assert records(work) == []
    assert len(llm.requests) == 1
    # A replay by hand now would park them again: refused, nothing moves.
    refused = httpx.post(f"{url}/replay/default/pol", json={}, timeout=10)
    assert refused.status_code == 409, refused.text
    assert "suspended" in refused.json()["detail"]
    assert skill(url, "record")["parked"] == 5

    # The daily reset (00:00 UTC): the agent resumes and the events are replayed in order.
    clock.shift = timedelta(days=1)

    def replayed() -> list[dict[str, Any]] | None:
        found = skills(url)
        done = records(work)
        if found["phase"] != "Running" or len(done) < 5 or skill(url, "record")["inflight"]:
            return None
        return done

    done = wait_until(replayed, timeout=60, what=f"the parked events to replay\n{out.getvalue()}")
    assert [(r["n"], r["id"]) for r in done] == [(n, f"rec-{n}") for n in range(5)]
    assert len({r["pid"] for r in done}) == 1
    assert httpx.get(f"{url}/parked", params={"agent": "pol"}, timeout=10).json()["items"] == []
    state = skills(url)
    assert (state["budget"]["reason"], state["budget"]["parked"]) == ("BudgetReset", 0)
    # Replayed through the broker, in the order they were parked.
    events = httpx.get(f"{url}/events", params={"limit": "100"}, timeout=10).json()["events"]
    intake = [(e["id"], e["parked"]) for e in events if e["type"] == "e2e.record"]
    # parked on arrival, then replayed once each, in order
    assert intake == [(i, True) for i in sent] + [(i, False) for i in sent]
    assert len(llm.requests) == 1
    assert "SUSPENDED" in out.getvalue() and "replayed 5 parked event(s) in order" in out.getvalue()

    # An event parked once the agent may spend is replayed to the skill's own address exactly
    # once: by hand (`POST /replay`) or by the policy loop, which replays any parked event
    # while the agent may spend (replay_due), whichever comes first.
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "e2e.record",
        "ce-source": "/e2e/policies",
        "ce-id": "by-hand-1",
        "content-type": "application/json",
    }
    stored = httpx.post(f"{url}/park/default/pol/record", headers=headers, content=b'{"n": 9}')
    assert stored.status_code == 202, stored.text
    by_hand = httpx.post(f"{url}/replay/default/pol", json={}, timeout=60)
    assert by_hand.status_code in (200, 409), by_hand.text  # 409: the loop's replay is running
    wait_until(
        lambda: httpx.get(f"{url}/parked", params={"agent": "pol"}, timeout=10).json()["items"]
        == [],
        timeout=60, what="the by-hand event to leave the parking queue",
    )  # fmt: skip
    by_hand_records = [r for r in records(work) if r["id"] == "by-hand-1"]
    assert [(r["n"], r["id"]) for r in by_hand_records] == [(9, "by-hand-1")]


@dataclass
class ManualClock:
    """The scheduler's clock: still unless the test moves it (a tick per minute moved)."""

    at: float = 1_767_225_630.0  # 2026-01-01T00:00:30Z: mid-minute, no tick is due

    def __call__(self) -> float:
        return self.at


def test_schedule_ticks_while_suspended_become_one_tick_at_resume(
    tmp_path: Path, llm: FakeLLM
) -> None:
    """As in a cluster (the PingSource points at the parking sink): ticks are parked, and
    the replay at resume delivers one, the latest, to the skill (parking/replay.py)."""
    work = tmp_path / "work"
    work.mkdir()
    agent = policy_agent(work, llm)
    record_skill = agent["spec"]["skills"][1]
    record_skill["schedule"] = {"cron": "* * * * *", "data": {"n": -1}}
    clock, ticks = Clock(), ManualClock()
    options = DevOptions(
        agent_file=write_agent(tmp_path / "agent", agent),
        port=0,
        state_dir=tmp_path / "state",
        eval_interval=EVAL,
        now=clock.now,
        clock=ticks,
    )
    with serving(options) as (mode, out):
        url = mode.broker_url.rstrip("/")
        spend_the_day(url, out.getvalue)

        def parked_ticks() -> list[str]:
            items = httpx.get(f"{url}/parked", params={"agent": "pol"}, timeout=10).json()
            return [i["eventId"] for i in items["items"] if i["skill"] == "record"]

        for n in range(1, 4):  # three minutes pass while the agent is suspended
            ticks.at += 60
            wait_until(lambda n=n: len(parked_ticks()) == n, timeout=30, what=f"{n} parked ticks")
        parked = parked_ticks()
        assert records(work) == []  # nothing ran

        clock.shift = timedelta(days=1)  # the reset: resume and replay

        def replayed() -> list[dict[str, Any]] | None:
            done = records(work)
            return (
                done if done and skills(url)["phase"] == "Running" and not parked_ticks() else None
            )

        done = wait_until(replayed, timeout=60, what=f"the replayed tick\n{out.getvalue()}")
        assert [(r["n"], r["id"]) for r in done] == [(-1, parked[-1])]  # the latest, once
        assert "2 schedule tick(s) coalesced" in out.getvalue()


# -- a real `rouse dev` process ----------------------------------------------------------------


def dev_with(tmp_path: Path, agent: dict[str, Any], state: str = "state") -> LocalDev:
    return start_dev(
        write_agent(tmp_path / "agent", agent),
        tmp_path / state,
        extra=("--eval-interval", str(EVAL)),
    )


def test_reject_makes_the_skills_answer_429(tmp_path: Path, llm: FakeLLM) -> None:
    work = tmp_path / "work"
    work.mkdir()
    running = dev_with(tmp_path, policy_agent(work, llm, on_exhausted="reject"))
    try:
        state = spend_the_day(running.url, running.logs)
        assert (state["budget"]["action"], state["budget"]["parked"]) == ("reject", 0)
        response = post(running.url, "e2e.record", {"n": 1}, event_id="rejected-1")
        assert response.status_code == 202 and "parked" not in response.json(), response.text

        def dead() -> list[dict[str, Any]] | None:
            letters: list[dict[str, Any]] = running.get("/deadletters")["deadLetters"]
            return letters or None

        letters = wait_until(dead, timeout=60, what=f"a dead letter\n{running.logs()[-3000:]}")
        assert [(d["skill"], d["event"]["knativeerrorcode"]) for d in letters] == [
            ("record", "429")
        ]
        reason = base64.b64decode(letters[0]["event"]["knativeerrordata"]).decode()
        assert "budget exhausted" in reason, reason
        assert records(work) == []
    finally:
        assert running.stop() == 0


def test_parked_cli_and_a_raised_budget_replays_after_a_restart(
    tmp_path: Path, llm: FakeLLM
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    running = dev_with(tmp_path, policy_agent(work, llm))
    try:
        spend_the_day(running.url, running.logs)
        for n in range(3):
            assert post(running.url, "e2e.record", {"n": n}, event_id=f"cli-{n}").json()["parked"]
        listed = rouse("parked", "--url", running.url, "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert [line.split()[-1] for line in lines] == ["id=cli-0", "id=cli-1", "id=cli-2"]
        assert all("park  default/pol/record  e2e.record" in line for line in lines)

        refused = rouse("parked", "--url", running.url, "replay", "default", "pol")
        assert refused.returncode != 0 and "suspended" in refused.stderr, refused.stderr

        first = lines[0].split()[0]
        dropped = rouse("parked", "--url", running.url, "drop", "default", "pol", "--id", first)
        assert (dropped.returncode, dropped.stdout.strip()) == (0, "dropped 1 event(s)")
        assert wait_until(
            lambda: running.skill("record")["parked"] == 2, timeout=10, what="2 parked"
        )
        sent = rouse(
            "send", "e2e.record", "--data", '{"n": 3}', "--broker", running.url, "--wait"
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "-> parked for record: daily budget spent (replayed at the reset)" in sent.stdout
        assert running.skill("record")["parked"] == 3
        assert records(work) == []
    finally:
        assert running.stop() == 0

    # The budget is raised: a new `rouse dev` over the same state dir delivers what was parked.
    raised = policy_agent(work, llm, tokens=1000)
    (tmp_path / "agent/agent.yaml").write_text(yaml.safe_dump(raised))
    running = dev_with(tmp_path, raised)
    try:
        done = wait_until(
            lambda: records(work) if len(records(work)) >= 3 else None,
            timeout=60,
            what=f"the parked events after the restart\n{running.logs()[-3000:]}",
        )
        assert [(r["n"], r["id"]) for r in done[:2]] == [(1, "cli-1"), (2, "cli-2")]
        assert done[2]["n"] == 3
        assert wait_until(
            lambda: running.skill("record")["parked"] == 0, timeout=10, what="queue empty"
        )
        listed = rouse("parked", "--url", running.url, "list")
        assert (listed.returncode, listed.stdout.strip()) == (0, "no parked events")
        assert running.get("/skills")["phase"] == "Running"
        assert len(records(work)) == 3
    finally:
        assert running.stop() == 0


# -- warm pool ------------------------------------------------------------------------------------

BURST = 5  # the policy raises the pool after at least 5 invocations in its window
RETENTION = 1.0


def warm_agent(work: Path) -> dict[str, Any]:
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "warm"},
        "spec": {
            "image": "example.invalid/warm:1",
            "env": [{"name": "E2E_WORK", "value": str(work)}],
            "warmPool": {"max": 2, "window": "60s"},
            "skills": [
                {
                    "name": "hold",
                    "handler": "e2e_skills:hold",
                    "events": [{"type": "e2e.hold"}],
                    "concurrency": 1,
                    "scaling": {"max": BURST, "retention": f"{RETENTION:g}s"},
                }
            ],
        },
    }


def test_warm_pool_keeps_a_process_alive_after_measured_cold_starts(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    running = dev_with(tmp_path, warm_agent(work))
    try:
        assert running.skill("hold")["warmFloor"] == 0
        chains = []
        for n in range(BURST):
            response = running.post("e2e.hold", {"n": n})
            assert response.status_code == 202, response.text
            chains.append(response.json()["chain"])
        wait_until(
            lambda: len(running.pids("hold")) == BURST,
            timeout=60,
            what=f"{BURST} processes (one cold start per event)",
        )
        (work / "gate").touch()
        for chain in chains:
            running.wait_chain(chain)

        # 5 of 5 invocations were cold in the window: the policy keeps one process warm.
        pool = wait_until(
            lambda: (found := running.skill("hold"))["warmFloor"] == 1 and found,
            timeout=30,
            what=f"the warm pool to keep a process\n{running.logs()[-3000:]}",
        )
        # Raised for the cold starts; the next evaluation may already want 2 and be held back
        # by the rate limit ("RateLimited: wants 2 (ColdStartsAboveTarget: ...)").
        assert "ColdStartsAboveTarget: cold-start share 100.0%" in pool["warmReason"]

        # Past the retention the others stop; one stays, idle, long after its retention.
        def kept() -> bool:
            processes = running.skill("hold")["processes"]
            assert processes, "the warm process was stopped"
            return len(processes) == 1 and processes[0]["idleFor"] >= 3 * RETENTION

        wait_until(kept, timeout=30, what="one process idle for 3x its retention")
        assert running.skill("hold")["warmFloor"] == 1
        assert "warm pool: keep 1 process(es) alive" in running.logs()
    finally:
        assert running.stop() == 0


REPO = Path(__file__).resolve().parents[2]
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # inside the example's office hours


def test_a_warm_pool_schedule_starts_processes_before_any_event(tmp_path: Path) -> None:
    """support-triage keeps one process per skill warm on weekdays 08:00-18:00 UTC."""
    options = DevOptions(
        agent_file=REPO / "examples/support-triage/agent.yaml",
        port=0,
        state_dir=tmp_path / "state",
        eval_interval=EVAL,
        now=lambda: MONDAY_9,
    )
    with serving(options) as (mode, out):
        url = mode.broker_url.rstrip("/")

        def warm() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = skills(url)["skills"]
            ready = all(
                [p["state"] for p in s["processes"]] == ["ready"] and s["warmFloor"] == 1
                for s in found
            )
            return found if ready else None

        found = wait_until(warm, timeout=60, what=f"one warm process per skill\n{out.getvalue()}")
        assert {s["skill"]: s["warmReason"].split(":")[0] for s in found} == {
            "triage": "Schedule",
            "draft": "Schedule",
            "escalate": "Schedule",
            "refund": "Schedule",
            "digest": "Schedule",
            "ask": "Schedule",  # the front door too: people feel its cold starts most
        }
        assert all(s["coldStarts"] == 0 and s["delivered"] == 0 for s in found)
