"""The spend ledger on SQLite: atomic across processes, per-day figures, exposition."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from prometheus_client import generate_latest
from rouse_runtime.ledger import Entry, Line, ledger_registry, nano_usd, open_ledger

WRITER = """
import asyncio, sys
from rouse_runtime.ledger import open_ledger

async def main() -> None:
    ledger = open_ledger(sys.argv[1])
    for n in range(int(sys.argv[2])):
        await ledger.record("support", "triage", cold_start=n == 0, input_tokens=7,
                            output_tokens=3, cost_usd=0.0000015, namespace="team-a")
    await ledger.close()

asyncio.run(main())
"""


def test_concurrent_processes_add_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, "150"]) for _ in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]

    async def read() -> list[Line]:
        ledger = open_ledger(url)
        try:
            return await ledger.lines()
        finally:
            await ledger.close()

    [line] = asyncio.run(read())
    assert line == Line(
        namespace="team-a",
        agent="support",
        skill="triage",
        invocations=600,
        cold_starts=4,
        input_tokens=4200,
        output_tokens=1800,
        cost_nano_usd=600 * 1500,
        day=line.day,
        tokens_day=6000,
        cost_nano_usd_day=600 * 1500,
    )


async def test_days_are_kept_apart_and_totals_span_them(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/state.db")
    entry = Entry(invocations=1, cold_starts=1, input_tokens=10, output_tokens=5, cost_nano_usd=9)
    await ledger.add("", "a", "s", entry, day="2026-01-04")
    await ledger.add("", "a", "s", entry, day="2026-01-05")
    await ledger.add("", "a", "s", entry, day="2026-01-05")
    await ledger.add("", "b", "s", entry, day="2026-01-04")
    assert await ledger.lines(day="2026-01-05") == [
        Line("", "a", "s", 3, 3, 30, 15, 27, "2026-01-05", 30, 18),
        Line("", "b", "s", 1, 1, 10, 5, 9, "2026-01-05", 0, 0),
    ]
    await ledger.close()


def test_exposition_names_and_values() -> None:
    lines = [
        Line("ns", "a", "s", 12, 3, 100, 50, nano_usd(0.25), "2026-01-05", 40, nano_usd(0.1), 7)
    ]
    text = generate_latest(ledger_registry(lines, "2026-01-05")).decode()
    expected = [
        'rouse_ledger_invocations_total{agent="a",namespace="ns",skill="s"} 12.0',
        'rouse_ledger_cold_starts_total{agent="a",namespace="ns",skill="s"} 3.0',
        'rouse_ledger_tokens_total{agent="a",kind="input",namespace="ns",skill="s"} 100.0',
        'rouse_ledger_tokens_total{agent="a",kind="output",namespace="ns",skill="s"} 50.0',
        'rouse_ledger_cost_usd_total{agent="a",namespace="ns",skill="s"} 0.25',
        'rouse_ledger_tokens_today{agent="a",day="2026-01-05",namespace="ns",skill="s"} 40.0',
        'rouse_ledger_cost_usd_today{agent="a",day="2026-01-05",namespace="ns",skill="s"} 0.1',
        'rouse_ledger_unpriced_tokens_today{agent="a",day="2026-01-05",namespace="ns",skill="s"} 7.0',
        'rouse_ledger_day_info{day="2026-01-05"} 1.0',
    ]
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples == expected


async def test_on_the_store_lines_join_its_group_commit_and_sum_exactly(tmp_path: Path) -> None:
    from rouse_runtime.ledger import ledger_on
    from rouse_runtime.store.sqlite import SqliteStore

    store = SqliteStore(f"{tmp_path}/state.db")
    ledger = ledger_on(store, f"sqlite:///{tmp_path}/state.db")
    entry = Entry(invocations=1, cold_starts=0, input_tokens=10, output_tokens=5, cost_nano_usd=9)

    async def invocation(n: int) -> bool:
        key = f"k{n}"
        assert (await store.claim(key, "me", 30)).state == "claimed"
        staged = ledger.stage("ns", "a", "s" if n % 3 else "t", entry, day="2026-01-05")
        done = await store.complete(key, "me", {"n": n}, 600)  # the same commit as the line
        await staged
        return done

    # Many invocations per loop turn: their lines are summed into one upsert per commit.
    assert await asyncio.gather(*(invocation(n) for n in range(60))) == [True] * 60
    await ledger.stage("ns", "a", "s", Entry(cold_starts=1), day="2026-01-06")
    assert await ledger.lines(day="2026-01-05") == [
        Line("ns", "a", "s", 41, 1, 400, 200, 360, "2026-01-05", 600, 360),
        Line("ns", "a", "t", 20, 0, 200, 100, 180, "2026-01-05", 300, 180),
    ]
    await ledger.close()
    await store.close()
