"""The live terminal view of ``rouse dev``.

On a TTY the screen is redrawn twice a second with plain ANSI codes: one row
per skill (processes ready/starting, in-flight events, cold starts,
deliveries, retries, dead letters, tokens and cost, warm floor, parked
events) and the budget (today's figures from the ledger, and SUSPENDED while
it is spent), above the most recent log lines. When stdout is not a TTY (CI, a pipe, a file) every
log line is printed once with a timestamp and nothing is redrawn.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rouse_runtime.local.broker import Broker
    from rouse_runtime.policies.budget import BudgetDecision

CLEAR = "\x1b[H\x1b[2J"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
GREEN = "\x1b[32m"
RESET = "\x1b[0m"
COLUMNS = (
    "SKILL",
    "READY",
    "START",
    "INFLIGHT",
    "COLD",
    "DONE",
    "RETRY",
    "DEAD",
    "TOKENS",
    "COST $",
    "WARM",
    "PARKED",
)


class View:
    """Log sink and (on a TTY) the redrawn status table."""

    def __init__(
        self, *, stream: TextIO | None = None, tty: bool | None = None, log_lines: int = 15
    ) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.lines: deque[str] = deque(maxlen=log_lines)
        self.broker: Broker | None = None
        self.header = ""

    def log(self, line: str) -> None:
        """A log line: printed now (no TTY) or kept for the next redraw (TTY)."""
        stamped = f"{time.strftime('%H:%M:%S')} {line}"
        if self.tty:
            self.lines.append(stamped)
        else:
            print(stamped, file=self.stream, flush=True)

    async def run(self, interval: float = 0.5) -> None:
        """Redraw until cancelled (only on a TTY)."""
        if not self.tty:
            return
        while True:
            self.stream.write(CLEAR + self.render())
            self.stream.flush()
            await asyncio.sleep(interval)

    def render(self) -> str:
        """The whole screen as text."""
        out = [self.header] if self.header else []
        if self.broker is not None:
            out.extend(render_table(self.broker))
        out.append(f"{DIM}--- log ---{RESET}")
        width = shutil.get_terminal_size((120, 40)).columns
        out.extend(line if len(line) <= width else line[: width - 1] + "…" for line in self.lines)
        return "\n".join(out) + "\n"


def skill_rows(broker: Broker) -> list[tuple[str, ...]]:
    """One row of figures per skill (plain strings, no colours)."""
    rows: list[tuple[str, ...]] = []
    for name, pool in broker.pools.items():
        live = pool.live()
        stats = broker.stats[name]
        usage = pool.usage()
        rows.append(
            (
                name,
                str(sum(p.state == "ready" for p in live)),
                str(sum(p.state == "starting" for p in live)),
                str(pool.inflight()),
                str(pool.cold_starts),
                str(stats.delivered),
                str(stats.retries),
                str(stats.dead_letters),
                f"{usage.get('tokens', 0):.0f}",
                f"{usage.get('costUSD', 0):.4f}",
                str(pool.warm_floor),
                str(broker.parking.counts.get(name, 0) if broker.parking else 0),
            )
        )
    return rows


def budget_line(
    agent: dict[str, Any],
    tokens: float,
    cost: float,
    decision: BudgetDecision | None = None,
    parked: int = 0,
) -> str:
    """The agent's daily budget: today's ledger figures once the policy has judged them.

    Without a decision (no daily limits) it shows what the skills spent since
    ``rouse dev`` started.
    """
    daily = ((agent["spec"].get("budget") or {}).get("daily")) or {}
    token_cap = f"/{daily['tokens']}" if daily.get("tokens") is not None else ""
    cost_cap = f"/${float(daily['costUSD']):.2f}" if daily.get("costUSD") is not None else ""
    if decision is None:
        return f"budget (since start): {tokens:.0f}{token_cap} tokens, ${cost:.4f}{cost_cap}"
    line = (
        f"budget today: {decision.tokens_today:.0f}{token_cap} tokens, "
        f"${decision.cost_today_usd:.4f}{cost_cap}"
    )
    if decision.suspended:
        until = decision.resets_at.strftime("%Y-%m-%d %H:%M UTC")
        held = f"{parked} event(s) parked" if decision.action == "park" else "skills answer 429"
        line += f" - SUSPENDED ({decision.reason}): {held} until {until}"
    elif decision.nearly_spent:
        line += " - nearly spent: not kept warm"
    return line


def render_table(broker: Broker) -> list[str]:
    """The status table and budget line."""
    rows = skill_rows(broker)
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)
    ]
    lines = [BOLD + "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) + RESET]
    for row in rows:
        text = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
        lines.append(GREEN + text + RESET if row[1] != "0" else text)
    tokens = sum(float(r[8]) for r in rows)
    cost = sum(float(r[9]) for r in rows)
    parking = broker.parking
    decision = parking.decision if parking is not None else None
    parked = sum(parking.counts.values()) if parking is not None else 0
    lines.append(budget_line(broker.agent, tokens, cost, decision, parked))
    return lines
