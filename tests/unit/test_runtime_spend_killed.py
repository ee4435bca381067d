"""Spend is in the ledger per model call: a runtime killed mid-run still counts what it spent.

A real runtime process calls the fake OpenAI server (a real HTTP server speaking the
chat-completions protocol), then hangs; the test SIGKILLs it, as a node losing a
pod or Knative cutting a timed-out request would, and reads the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rouse_runtime.ledger import Line, open_ledger
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.runtime import start_runtime
from rouse_testing.wait import wait_until

SKILL = """
import asyncio, os, pathlib

async def spend_then_hang(event, ctx):
    await ctx.llm.chat([{"role": "user", "content": "hi"}])
    pathlib.Path(os.environ["SPENT_MARKER"]).write_text("spent")
    await asyncio.sleep(3600)  # killed here
"""
PRICES = {"m": {"input": 1.5, "output": 2.0}}  # USD per 1M tokens


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(prompt_tokens=7, completion_tokens=3)
    yield server
    server.stop()


def ledger_lines(state_url: str) -> list[Line]:
    async def read() -> list[Line]:
        ledger = open_ledger(state_url)
        try:
            return [line for line in await ledger.lines() if line.agent == "killed"]
        finally:
            await ledger.close()

    return asyncio.run(read())


def test_spend_of_a_killed_invocation_is_counted(
    tmp_path: Path, state_url: str, llm: FakeLLM
) -> None:
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills" / "spender.py").write_text(SKILL)
    marker = tmp_path / "spent"
    runtime = start_runtime(
        {
            "ROUSE_HANDLER": "spender:spend_then_hang",
            "ROUSE_AGENT": "killed",
            "ROUSE_SKILL": "work",
            "ROUSE_NAMESPACE": "team-a",
            "ROUSE_STATE_URL": state_url,
            "ROUSE_LLM_BASE_URL": llm.url,
            "ROUSE_LLM_MODEL": "m",
            "ROUSE_LLM_PRICES": json.dumps(PRICES),
            "SPENT_MARKER": str(marker),
        },
        tmp_path / "skills",
    )
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "k-1",
        "ce-source": "/test",
        "ce-type": "com.example.work",
        "content-type": "application/json",
    }

    def post() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the process dies under the request
            httpx.post(runtime.url, headers=headers, content=b"{}", timeout=60)

    sender = threading.Thread(target=post, daemon=True)
    sender.start()
    try:
        wait_until(marker.exists, timeout=30, what="the skill's model call to return")
    finally:
        runtime.proc.kill()
        runtime.proc.wait(timeout=30)
    sender.join(timeout=30)
    [line] = ledger_lines(state_url)
    # 7 input and 3 output tokens at $1.5 / $2 per 1M: 10.5 + 6 = 16.5 micro-USD.
    assert (line.namespace, line.input_tokens, line.output_tokens, line.cost_nano_usd) == (
        "team-a",
        7,
        3,
        16_500,
    )
    assert (line.tokens_day, line.invocations) == (10, 0)  # the invocation never finished
