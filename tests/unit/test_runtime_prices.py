"""Model prices: the genai-prices catalog by default, ROUSE_LLM_PRICES as override, and an
unknown model's tokens recorded as unpriced (so the budget condition can say so).

Real runtime processes call the fake OpenAI server (a real HTTP server speaking the
chat-completions protocol) and the ledger in the state store is read back.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from genai_prices import Usage as CatalogUsage
from genai_prices import calc_price
from rouse_runtime.ledger import Line, nano_usd, open_ledger
from rouse_runtime.policies.budget import BudgetSpec, Usage, decide
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.runtime import start_runtime

SKILL = """
async def ask(event, ctx):
    await ctx.llm.chat([{"role": "user", "content": "hi"}], model=event.data["model"])
    return None
"""


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(prompt_tokens=7000, completion_tokens=3000)
    yield server
    server.stop()


def spend(tmp_path: Path, llm: FakeLLM, model: str, **env: str) -> tuple[Line, str]:
    """One call of `model` through a real runtime; the skill's ledger line and the logs."""
    (tmp_path / "skills").mkdir(exist_ok=True)
    (tmp_path / "skills" / "asker.py").write_text(SKILL)
    state = f"sqlite:///{tmp_path}/{model}.db"
    runtime = start_runtime(
        {
            "ROUSE_HANDLER": "asker:ask",
            "ROUSE_AGENT": "pricey",
            "ROUSE_STATE_URL": state,
            "ROUSE_LLM_BASE_URL": llm.url,
            **env,
        },
        tmp_path / "skills",
    )
    try:
        answer = httpx.post(
            runtime.url,
            headers={
                "ce-specversion": "1.0",
                "ce-id": f"p-{model}",
                "ce-source": "/prices",
                "ce-type": "t.ask",
                "content-type": "application/json",
            },
            content=json.dumps({"model": model}).encode(),
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        logs = runtime.logs()
    finally:
        runtime.stop()

    async def read() -> list[Line]:
        ledger = open_ledger(state)
        try:
            return await ledger.lines()
        finally:
            await ledger.close()

    [line] = asyncio.run(read())
    return line, logs


def test_a_catalog_model_is_priced_without_any_configuration(tmp_path: Path, llm: FakeLLM) -> None:
    line, _ = spend(tmp_path, llm, "gpt-4o-mini")
    catalog = calc_price(
        CatalogUsage(input_tokens=7000, output_tokens=3000), model_ref="gpt-4o-mini"
    )
    assert catalog.total_price > 0
    assert (line.cost_nano_usd, line.unpriced_tokens_day) == (
        nano_usd(float(catalog.total_price)),
        0,
    )


def test_rouse_llm_prices_overrides_the_catalog(tmp_path: Path, llm: FakeLLM) -> None:
    prices = json.dumps({"gpt-4o-mini": {"input": 1.0, "output": 2.0}})
    line, _ = spend(tmp_path, llm, "gpt-4o-mini", ROUSE_LLM_PRICES=prices)
    assert line.cost_nano_usd == nano_usd((7000 * 1.0 + 3000 * 2.0) / 1e6)


def test_an_unknown_model_is_recorded_as_unpriced_and_said(tmp_path: Path, llm: FakeLLM) -> None:
    line, logs = spend(tmp_path, llm, "house-model-x")
    assert (line.tokens_day, line.cost_nano_usd, line.unpriced_tokens_day) == (10000, 0, 10000)
    assert "no known price for model house-model-x" in logs
    # The budget's condition says a cost limit cannot see those tokens.
    spec = BudgetSpec(daily_tokens=None, daily_cost_usd=5.0)
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    usage = Usage(tokens=10000, cost_usd=0.0, unpriced_tokens=line.unpriced_tokens_day)
    decision = decide(spec, usage, None, now)
    assert (decision.within_budget, decision.reason) == (True, "UnpricedModel")
    assert decision.message.startswith("10000 tokens today came from models without a known price")


def test_the_catalog_is_not_imported_at_start_up() -> None:
    """A cold start does not pay for genai-prices: it is imported on the first model call."""
    code = (
        "import sys, rouse_runtime.server, rouse_runtime.context, rouse_runtime.llm;"
        " print('genai_prices' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "False"), proc.stderr
