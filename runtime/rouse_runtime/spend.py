"""Spend goes into the ledger per model call, as it happens.

Written after the handler returned, a killed pod, a timeout or a crash would
hide what the invocation already spent (the provider has billed it). So each
`ctx.llm` call's tokens and cost become their own ledger line (no invocation,
no cold start) the moment the answer is read, and the skill goes on only once
the line is durable; the invocation's own line (count, cold start) still rides
with its idempotency result. A store failure is logged, never raised: the
tokens are spent either way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rouse_runtime.ledger import Entry, nano_usd
from rouse_runtime.store import StoreError

if TYPE_CHECKING:
    from rouse_runtime.server import Runtime

log = logging.getLogger("rouse.spend")


def spend_entry(input_tokens: int, output_tokens: int, cost_usd: float, priced: bool) -> Entry:
    """The ledger line of one model call: spend only (tokens of an unknown price flagged)."""
    return Entry(
        invocations=0,
        cold_starts=0,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_nano_usd=nano_usd(cost_usd),
        unpriced_tokens=0 if priced else input_tokens + output_tokens,
    )


async def record_spend(
    runtime: Runtime, input_tokens: int, output_tokens: int, cost_usd: float, priced: bool
) -> None:
    """Add a model call's spend to the runtime's ledger line and wait until it is durable."""
    cfg = runtime.config
    entry = spend_entry(input_tokens, output_tokens, cost_usd, priced)
    try:
        await runtime.ledger.stage(cfg.namespace, cfg.agent, cfg.skill, entry)
    except StoreError as exc:
        log.warning("ledger: spend of %s/%s not recorded: %s", cfg.agent, cfg.skill, exc)
