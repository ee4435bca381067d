"""A front door through real HTTP: keys, JSON in and out, Server-Sent Events, budgets mid-stream.

Real `rouse-runtime` processes on loopback; the model is the real-protocol fake
(tests/rouse_testing/openai_server.py, streaming as OpenAI does); the client reads
the streams with httpx-sse.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from rouse_runtime.config import ConfigError, load_config
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.runtime import RunningRuntime, start_runtime

HANDLERS = Path(__file__).parent / "runtime_handlers"
KEY = "k-front-1"
WORDS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(prompt_tokens=3, completion_tokens=20, content=WORDS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def streaming(llm: FakeLLM) -> Iterator[RunningRuntime]:
    """A keyed front door whose handler streams; 5 steps, 15 tokens, 8 s per invocation
    (long enough for a loaded machine's first model stream, well under the slow handler's 30 s)."""
    rt = start_runtime(
        {
            "ROUSE_HANDLER": "rouse_front_door_skills:stream",
            "ROUSE_AGENT": "shop",
            "ROUSE_SKILL": "ask",
            "ROUSE_FRONT_DOOR": "keys",
            "ROUSE_API_KEYS": f"k-other\n{KEY}\n",
            "ROUSE_MAX_STEPS": "5",
            "ROUSE_MAX_TOKENS": "15",
            "ROUSE_TIMEOUT_SECONDS": "8",
            "ROUSE_LLM_BASE_URL": llm.url,
            "ROUSE_LLM_MODEL": "gpt-4o-mini",
        },
        HANDLERS,
    )
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def public(llm: FakeLLM) -> Iterator[RunningRuntime]:
    """A public front door answering JSON."""
    rt = start_runtime(
        {
            "ROUSE_HANDLER": "rouse_front_door_skills:answer",
            "ROUSE_AGENT": "shop",
            "ROUSE_SKILL": "answer",
            "ROUSE_FRONT_DOOR": "public",
            "ROUSE_MAX_STEPS": "2",
            "ROUSE_LLM_BASE_URL": llm.url,
            "ROUSE_LLM_MODEL": "gpt-4o-mini",
        },
        HANDLERS,
    )
    yield rt
    rt.stop()


def events(
    rt: RunningRuntime, body: Any, key: str | None = KEY
) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    """POST to the front door and read the whole SSE stream: (response, [(event, data)])."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "POST", rt.url, json=body, headers=headers) as source,
    ):
        source.response.raise_for_status()
        return source.response, [(e.event, json.loads(e.data)) for e in source.iter_sse()]


def metric(rt: RunningRuntime, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(f"{rt.url}/metrics").text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_without_a_valid_key_401_and_nothing_runs(streaming: RunningRuntime, llm: FakeLLM) -> None:
    before = (metric(streaming, "rouse_invocations_total"), len(llm.requests))
    for headers in ({}, {"authorization": "Bearer k-wrong"}, {"authorization": f"Basic {KEY}"}):
        response = httpx.post(streaming.url, json={"do": "llm"}, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    follow = httpx.get(f"{streaming.url}/runs/{'a' * 32}")
    assert follow.status_code == 401
    assert (metric(streaming, "rouse_invocations_total"), len(llm.requests)) == before
    assert KEY not in streaming.logs()


def test_a_stream_opens_with_its_run_and_ends_with_done(streaming: RunningRuntime) -> None:
    response, got = events(streaming, {"do": "words", "words": ["Hello", "there", "!"]})
    assert response.headers["content-type"].startswith("text/event-stream")
    (first, opening), *chunks, (last, end) = got
    assert first == "run" and opening["follow"] == f"/runs/{opening['run']}"
    assert response.headers["rouse-run"] == opening["run"]
    assert chunks == [("chunk", "Hello"), ("chunk", "there"), ("chunk", "!")]
    assert last == "done" and end["run"] == opening["run"] and end["usage"]["steps"] == 3


def test_the_handler_sees_the_request_as_event_data(streaming: RunningRuntime) -> None:
    # A CloudEvent posted to a front door is not an event: it is a request like any other.
    _, got = events(streaming, {"do": "request", "n": 1})
    assert got[1] == (
        "chunk",
        {
            "type": "dev.rouse.http.request",
            "source": "/agents/shop/ask",
            "data": {"do": "request", "n": 1},
        },
    )


def test_a_step_limit_ends_the_stream_mid_way_naming_it(streaming: RunningRuntime) -> None:
    words = [f"w{i}" for i in range(8)]
    _, got = events(streaming, {"do": "words", "words": words})
    assert [d for e, d in got if e == "chunk"] == words[:5]
    name, stop = got[-1]
    assert name == "budget.exceeded"
    assert (stop["limit"], stop["used"], stop["max"]) == ("steps", 6, 5)
    assert metric(streaming, "rouse_budget_exceeded_total", limit="steps") >= 1


def test_a_token_limit_stops_a_model_stream_mid_answer(
    streaming: RunningRuntime, llm: FakeLLM
) -> None:
    tokens_before = metric(streaming, "rouse_tokens_total")
    _, got = events(streaming, {"do": "llm"})
    chunks = [d for e, d in got if e == "chunk"]
    assert "".join(chunks) == " ".join(WORDS.split()[:15])  # 15 of the 20 words, then stopped
    assert got[-1][0] == "budget.exceeded" and got[-1][1]["limit"] == "tokens"
    assert llm.requests[-1]["stream"] is True
    # what was streamed before the stop is charged (output chunks + an estimate of the prompt)
    assert metric(streaming, "rouse_tokens_total") - tokens_before >= 15


def test_a_failing_handler_ends_with_an_error_event(streaming: RunningRuntime) -> None:
    _, got = events(streaming, {"do": "fail"})
    assert got[1] == ("chunk", "first")
    assert got[-1][0] == "error" and "broken on purpose" in got[-1][1]["detail"]


def test_the_wall_clock_limit_applies_mid_stream(streaming: RunningRuntime) -> None:
    _, got = events(streaming, {"do": "slow"})
    assert got[1] == ("chunk", "first")
    assert got[-1][0] == "budget.exceeded" and got[-1][1]["limit"] == "timeout"


def test_json_in_json_out_with_the_run(public: RunningRuntime) -> None:
    response = httpx.post(public.url, json={"question": "where is my order?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == {
        "type": "dev.rouse.http.request",
        "data": {"question": "where is my order?"},
    }
    assert body["follow"] == f"/runs/{body['run']}" and response.headers["rouse-run"] == body["run"]
    # another request, another run
    assert httpx.post(public.url, json=1).json()["run"] != body["run"]


def test_a_model_stream_is_charged_its_exact_usage(public: RunningRuntime) -> None:
    body = httpx.post(public.url, json={"llm": True}).json()
    assert body["result"]["text"] == WORDS
    assert (body["result"]["usage"]["input_tokens"], body["result"]["usage"]["output_tokens"]) == (
        3,
        20,
    )


def test_json_budget_stop_and_bad_input(public: RunningRuntime) -> None:
    stopped = httpx.post(public.url, json={"steps": 3}).json()
    assert stopped["budgetExceeded"]["limit"] == "steps" and "result" not in stopped
    bad = httpx.post(public.url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid JSON"
    big = httpx.post(public.url, content=b"[" + b"1," * 600_000 + b"1]")
    assert big.status_code == 413


def test_without_a_broker_a_run_is_followed_in_the_run_history(public: RunningRuntime) -> None:
    """No ROUSE_PROGRESS_URL (a cluster): the run history the runtime writes is the source."""
    run = httpx.post(public.url, json={}).json()["run"]
    with httpx.stream("GET", f"{public.url}/runs/{run}", timeout=30) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    assert "event: delivery" in text and f'"run": "{run}"'.replace(" ", "") in text.replace(" ", "")
    assert "event: end" in text and '"done"' in text
    unknown = httpx.get(f"{public.url}/runs/{'0' * 32}")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown run"
    assert httpx.get(f"{public.url}/runs/not-a-run").status_code == 400


def test_a_streamed_run_is_in_the_run_history_from_its_first_chunk(
    streaming: RunningRuntime,
) -> None:
    """A stream records its own step (started before the handler runs, finished after), so a
    client following the run at once finds it, before any hand-off is delivered (a cluster)."""
    _, got = events(streaming, {"do": "words", "words": ["a", "b"]})
    run = got[0][1]["run"]
    headers = {"authorization": f"Bearer {KEY}"}
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "GET", f"{streaming.url}/runs/{run}", headers=headers) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        steps = [(e.event, json.loads(e.data)) for e in source.iter_sse()]
    (kind, step), end = steps
    assert kind == "delivery" and (step["skill"], step["outcome"]) == ("ask", "ok"), steps
    assert step["event"]["type"] == "dev.rouse.http.request" and step["attempts"] == 1
    assert end == ("end", {"run": run, "state": "done", "steps": 1})


def test_a_keyed_front_door_without_keys_refuses_to_start() -> None:
    env = {"ROUSE_HANDLER": "m:f", "ROUSE_FRONT_DOOR": "keys", "ROUSE_API_KEYS": " \n,"}
    with pytest.raises(ConfigError, match="ROUSE_API_KEYS holds no key"):
        load_config(env)
    with pytest.raises(ConfigError, match="ROUSE_FRONT_DOOR='open' must be keys or public"):
        load_config({**env, "ROUSE_FRONT_DOOR": "open"})
    door = load_config({**env, "ROUSE_API_KEYS": "k-a, k-b\nk-c"}).front_door
    assert door is not None and door.keys == {"k-a", "k-b", "k-c"} and "k-a" not in repr(door)
    assert load_config({"ROUSE_HANDLER": "m:f"}).front_door is None


def test_the_sse_libraries_are_imported_by_the_first_stream_not_at_start_up() -> None:
    """A front door's cold start pays for Starlette and uvicorn, not for sse-starlette/httpx-sse."""
    code = (
        "import os, sys; from rouse_runtime.config import load_config;"
        "from rouse_runtime.handler import LoadedHandler; from rouse_runtime.server import create_app;"
        "create_app(load_config(os.environ), LoadedHandler(lambda e, c: None, is_async=False));"
        "print(sorted(m for m in ('sse_starlette', 'httpx_sse', 'httpx') if m in sys.modules))"
    )
    env = {"ROUSE_HANDLER": "m:f", "ROUSE_FRONT_DOOR": "public", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr
