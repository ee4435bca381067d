"""ctx.tools against a real MCP server (FastMCP over streamable HTTP), through real runtime processes.

Results, the allow-list, maxToolCalls, tool errors, a server that goes away and
comes back, approval (declared and by the server's destructiveHint) that
suspends and resumes exactly once, rejection, and the connection kept across
invocations of a warm process.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rouse_runtime.config import ConfigError, load_config
from rouse_runtime.tools.client import Connections
from rouse_runtime.tools.spec import ToolServer, header_env, tools_env
from rouse_testing.mcp_server import MCPServer, start_mcp_server
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import wait_until

HANDLERS = Path(__file__).parent / "runtime_handlers"
AGENT, SKILL = "support", "ops"
DECISION = f"dev.rouse.{AGENT}.{SKILL}.tool.approval"
TOKEN = "Bearer s3cret-token"
ALLOW = ["add", "lookup", "delete", "send_mail", "slow", "whoami", "session", "tool_runs"]


@pytest.fixture(scope="module")
def tools_server() -> Iterator[MCPServer]:
    server = start_mcp_server()
    yield server
    server.stop()


def tools_spec(url: str, timeout: float = 10) -> list[dict[str, Any]]:
    return [
        {
            "name": "calc",
            "url": url,
            "allow": ALLOW,
            "approval": ["send_mail"],
            "timeoutSeconds": timeout,
            "headers": [
                {"name": "Authorization", "secretKeyRef": {"name": "calc", "key": "token"}}
            ],
        }
    ]


def runtime_env(
    url: str, handler: str = "call", timeout: float = 10, **extra: str
) -> dict[str, str]:
    return {
        "ROUSE_HANDLER": f"rouse_tools_skills:{handler}",
        "ROUSE_AGENT": AGENT,
        "ROUSE_SKILL": SKILL,
        "ROUSE_TOOLS": tools_env(tools_spec(url, timeout)),
        header_env("calc", "Authorization"): TOKEN,
        **extra,
    }


@pytest.fixture
def runtime(tools_server: MCPServer, state_url: str) -> Iterator[RunningRuntime]:
    rt = start_runtime(runtime_env(tools_server.url, ROUSE_STATE_URL=state_url), HANDLERS)
    yield rt
    rt.stop()


def event(id_: str, data: Any, type_: str = "test.job", **ext: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/jobs",
        "ce-type": type_,
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in ext.items()},
    }
    return headers, json.dumps(data).encode()


def calls(
    id_: str, *pairs: tuple[str, dict[str, Any]], **data: Any
) -> tuple[dict[str, str], bytes]:
    return event(id_, {"calls": [list(p) for p in pairs], **data})


def post(rt: RunningRuntime, message: tuple[dict[str, str], bytes]) -> httpx.Response:
    headers, body = message
    return httpx.post(rt.url, headers=headers, content=body, timeout=60)


def tool_runs(server: MCPServer, tool: str) -> int:
    """How often the server ran tool, asked over MCP from the test process."""

    async def ask() -> Any:
        spec = ToolServer("calc", server.url)
        connections = Connections({"calc": spec})
        try:
            return await connections.call(spec, "calc.tool_runs", "tool_runs", {"tool": tool})
        finally:
            await connections.close()

    return int(asyncio.run(ask())["result"])


def metric(rt: RunningRuntime, prefix: str) -> list[str]:
    text = httpx.get(f"{rt.url}/metrics").text
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_calls_return_results_over_one_reused_session(
    runtime: RunningRuntime, tools_server: MCPServer
) -> None:
    first = post(
        runtime,
        calls(
            "e-1",
            ("calc.add", {"a": 2, "b": 3}),
            ("calc.lookup", {"id": "r1"}),
            ("calc.whoami", {}),
            ("calc.session", {}),
        ),
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["mcpLoaded"] is False  # no tool called yet: the SDK is not even imported
    assert body["results"][:3] == [
        {"result": 5},  # FastMCP wraps a non-object return value
        {"id": "r1", "title": "first"},  # structured content as the server gave it
        {"result": TOKEN},  # the header from its env variable (a Secret in a cluster)
    ]
    session = body["results"][3]["result"]
    assert session
    second = post(runtime, calls("e-2", ("calc.session", {})))
    assert second.json() == {"results": [{"result": session}], "mcpLoaded": True}
    assert metric(runtime, "rouse_tool_calls_total{") == [
        'rouse_tool_calls_total{agent="support",skill="ops"} 5.0'
    ]
    assert metric(runtime, 'rouse_tool_call_duration_seconds_count{agent="support"') == [
        f'rouse_tool_call_duration_seconds_count{{agent="support",outcome="ok",server="calc",'
        f'skill="ops",tool="{tool}"}} {n}'
        for tool, n in (("add", "1.0"), ("lookup", "1.0"), ("whoami", "1.0"), ("session", "2.0"))
    ]
    assert TOKEN not in runtime.logs()


def test_allow_list_and_unknown_server_refuse_before_the_server(
    tools_server: MCPServer, tmp_path: Path
) -> None:
    spec = tools_spec(tools_server.url)
    spec[0]["allow"] = ["add"]
    spec[0]["approval"] = []
    env = runtime_env(tools_server.url) | {"ROUSE_TOOLS": tools_env(spec)}
    rt = start_runtime(env, HANDLERS)
    try:
        before = tool_runs(tools_server, "lookup")
        response = post(
            rt,
            calls(
                "e-3",
                ("calc.lookup", {"id": "r1"}),
                ("mail.send", {}),
                ("calc.add", {"a": 1, "b": 1}),
            ),
        )
        assert response.json()["results"] == [
            {
                "error": "ToolNotAllowed",
                "message": "calc.lookup: not in the allow-list of tool server calc (add)",
            },
            {
                "error": "ToolNotAllowed",
                "message": "mail.send: expected <server>.<tool> with a server of spec.tools"
                " (servers: calc)",
            },
            {"result": 2},
        ]
        assert tool_runs(tools_server, "lookup") == before
    finally:
        rt.stop()


def test_tool_error_is_a_clear_exception_and_unhandled_a_500(runtime: RunningRuntime) -> None:
    handled = post(runtime, calls("e-4", ("calc.lookup", {"id": "nope"})))
    assert handled.json()["results"] == [
        {
            "error": "ToolFailed",
            "message": "calc.lookup: the tool reported an error:"
            " Error executing tool lookup: no record nope",
        }
    ]
    unhandled = post(runtime, calls("e-5", ("calc.lookup", {"id": "nope"}), **{"raise": True}))
    assert unhandled.status_code == 500
    assert unhandled.json()["detail"].startswith("ToolFailed: calc.lookup:")
    assert metric(
        runtime, 'rouse_tool_call_duration_seconds_count{agent="support",outcome="error"'
    ) == [
        'rouse_tool_call_duration_seconds_count{agent="support",outcome="error",server="calc",'
        'skill="ops",tool="lookup"} 2.0'
    ]


def test_max_tool_calls_stops_the_skill_without_retry(tools_server: MCPServer) -> None:
    rt = start_runtime(runtime_env(tools_server.url, ROUSE_MAX_TOOL_CALLS="3"), HANDLERS)
    try:
        before = tool_runs(tools_server, "add")
        response = post(rt, calls("e-6", *[("calc.add", {"a": i, "b": 1}) for i in range(5)]))
        assert response.status_code == 200
        assert response.headers["ce-type"] == "dev.rouse.budget.exceeded"
        assert {k: response.json()[k] for k in ("limit", "used", "max")} == {
            "limit": "tool_calls",
            "used": 4,
            "max": 3,
        }
        assert tool_runs(tools_server, "add") == before + 3  # the 4th never reached the server
    finally:
        rt.stop()


def test_plain_def_skill_calls_through_ctx_run(tools_server: MCPServer) -> None:
    rt = start_runtime(runtime_env(tools_server.url, handler="plain"), HANDLERS)
    try:
        response = post(rt, calls("e-7", ("calc.add", {"a": 40, "b": 2})))
        assert response.json() == {"results": [{"result": 42}]}
    finally:
        rt.stop()


def test_list_shows_allowed_tools_and_which_wait_for_approval(tools_server: MCPServer) -> None:
    rt = start_runtime(runtime_env(tools_server.url, handler="listing"), HANDLERS)
    try:
        tools = {t["name"]: t for t in post(rt, event("e-8", {})).json()["tools"]}
        assert sorted(tools) == sorted(f"calc.{name}" for name in ALLOW)
        approval = {name for name, t in tools.items() if t["approval"]}
        assert approval == {"calc.send_mail", "calc.delete"}  # declared; destructiveHint
        assert tools["calc.add"]["inputSchema"]["required"] == ["a", "b"]
    finally:
        rt.stop()


def answer(request: httpx.Response, id_: str, data: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The approval event the request asks for, as a person's tool would send it."""
    how = request.json()["answer"]
    assert how["type"] == DECISION
    return event(id_, data, type_=how["type"], rousekey=how["rousekey"])


def test_approval_suspends_and_each_call_runs_once(
    runtime: RunningRuntime, tools_server: MCPServer
) -> None:
    runs = {tool: tool_runs(tools_server, tool) for tool in ("add", "send_mail", "delete")}
    job = calls(
        "e-9",
        ("calc.add", {"a": 1, "b": 2}),
        ("calc.send_mail", {"to": "ops@example.com", "body": "r2 goes"}),
        ("calc.delete", {"id": "r2"}),
    )
    asked = post(runtime, job)
    assert asked.status_code == 200, asked.text
    assert asked.headers["ce-type"] == "dev.rouse.tool.approval.requested"
    request = asked.json()
    assert {k: request[k] for k in ("tool", "arguments", "reason", "agent", "skill", "event")} == {
        "tool": "calc.send_mail",
        "arguments": {"to": "ops@example.com", "body": "r2 goes"},
        "reason": "declared",
        "agent": AGENT,
        "skill": SKILL,
        "event": {"source": "/jobs", "id": "e-9", "type": "test.job"},
    }
    assert post(runtime, job).json() == request  # a redelivery: answered from the store
    # approved: send_mail runs, then the destructive delete asks in turn
    asked_again = post(runtime, answer(asked, "a-1", {"approved": True, "by": "alice"}))
    assert asked_again.headers["ce-type"] == "dev.rouse.tool.approval.requested"
    assert {k: asked_again.json()[k] for k in ("tool", "reason")} == {
        "tool": "calc.delete",
        "reason": "destructive",
    }
    done = post(runtime, answer(asked_again, "a-2", {"approved": True}))
    assert done.status_code == 200, done.text
    assert done.headers["ce-type"] == "dev.rouse.ops.completed"
    assert done.json()["results"] == [
        {"result": 3},
        {"result": "sent to ops@example.com"},
        {"deleted": "r2"},
    ]
    # the same answer again, and a late second answer: nothing runs again
    assert post(runtime, answer(asked_again, "a-2", {"approved": True})).json() == done.json()
    late = post(runtime, answer(asked_again, "a-3", {"approved": True}))
    assert (late.status_code, late.content) == (202, b"")
    assert {tool: tool_runs(tools_server, tool) - n for tool, n in runs.items()} == {
        "add": 1,  # the resumed runs got its journaled result
        "send_mail": 1,
        "delete": 1,
    }


def test_rejection_raises_tool_rejected(runtime: RunningRuntime, tools_server: MCPServer) -> None:
    before = tool_runs(tools_server, "send_mail")
    asked = post(
        runtime, calls("e-10", ("calc.send_mail", {"to": "all@example.com", "body": "hi"}))
    )
    assert asked.headers["ce-type"] == "dev.rouse.tool.approval.requested"
    rejected = post(runtime, answer(asked, "a-4", {"approved": False, "reason": "too many people"}))
    assert rejected.json()["results"] == [
        {
            "error": "ToolRejected",
            "message": "calc.send_mail: the call was rejected: too many people",
        }
    ]
    assert tool_runs(tools_server, "send_mail") == before


def test_server_going_away_mid_call_then_back(tmp_path: Path) -> None:
    server = start_mcp_server()
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    rt = start_runtime(runtime_env(server.url, timeout=3), HANDLERS)
    try:
        replies: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: replies.append(post(rt, calls("e-11", ("calc.slow", {"seconds": 60}))))
        )
        thread.start()
        wait_until(lambda: tool_runs(server, "slow") == 1, what="the slow call to reach the server")
        server.stop()
        thread.join(timeout=60)
        assert replies and replies[0].json()["results"] == [
            {
                "error": "ToolUnavailable",
                "message": "calc.slow: no answer from tool server calc within 3s"
                " (spec.tools[].timeoutSeconds): it is slow or went away during the call",
            }
        ]
        down = post(rt, calls("e-12", ("calc.add", {"a": 1, "b": 1})))
        [error] = down.json()["results"]
        assert error["error"] == "ToolUnavailable"
        assert error["message"].startswith(
            f"calc.add: cannot reach tool server calc at {server.url}"
        )
        server = start_mcp_server(port)  # back on the same address: the next call reconnects
        assert post(rt, calls("e-13", ("calc.add", {"a": 1, "b": 1}))).json()["results"] == [
            {"result": 2}
        ]
    finally:
        rt.stop()
        server.stop()


def test_missing_header_variable_fails_the_start_naming_it() -> None:
    env = runtime_env("http://127.0.0.1:9/mcp")
    del env[header_env("calc", "Authorization")]
    with pytest.raises(ConfigError) as raised:
        load_config(env)
    assert str(raised.value).startswith(
        "ROUSE_TOOL_CALC__AUTHORIZATION is not set: it carries header Authorization of tool"
        " server 'calc'"
    )
