"""The runtime through real HTTP: binary and structured round trips, replies, health, metrics."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rouse_runtime.events import derived_id
from rouse_runtime.runs.ids import root_run_id
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import require_tool

HANDLERS = Path(__file__).parent / "runtime_handlers"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRuntime]:
    runs = tmp_path_factory.mktemp("runs") / "runs.txt"
    rt = start_runtime(
        {
            "ROUSE_HANDLER": "rouse_test_skills:skill",
            "ROUSE_AGENT": "shop",
            "ROUSE_SKILL": "triage",
            "ROUSE_REPLY_TYPE": "com.example.triaged",
            "ROUSE_TEST_RUNS": str(runs),
        },
        HANDLERS,
    )
    yield rt
    rt.stop()


def binary_headers(
    type_: str, id_: str, content_type: str = "application/json", **ext: str
) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/tests/http",
        "ce-type": type_,
        "content-type": content_type,
    }
    headers.update({f"ce-{k}": v for k, v in ext.items()})
    return headers


def recent(iso: str) -> bool:
    return abs((datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()) < 60


def test_binary_round_trip_reply_attributes(runtime: RunningRuntime) -> None:
    response = httpx.post(
        runtime.url,
        headers=binary_headers("test.echo", "b-1", traceparent=TRACEPARENT),
        content=b'{"ticket": 7}',
    )
    assert response.status_code == 200, response.text
    headers = {
        k: v for k, v in response.headers.items() if k.startswith("ce-") or k == "content-type"
    }
    assert recent(headers.pop("ce-time"))
    assert headers == {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": derived_id("shop", "triage", "/tests/http", "b-1", "reply"),
        "ce-source": "/agents/shop/triage",
        "ce-type": "com.example.triaged",
        "ce-traceparent": TRACEPARENT,
        # The run the event started (runs/ids.py), carried on to what it causes.
        "ce-rouserun": root_run_id("/tests/http", "b-1"),
    }
    assert response.json() == {"echo": {"ticket": 7}}


def test_structured_round_trip_reply_is_structured(runtime: RunningRuntime) -> None:
    event = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/tests/http",
        "type": "test.echo",
        "datacontenttype": "application/json",
        "traceparent": TRACEPARENT,
        "data": {"ticket": 8},
    }
    response = httpx.post(
        runtime.url,
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(event),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/cloudevents+json"
    reply = response.json()
    assert recent(reply.pop("time"))
    assert reply == {
        "specversion": "1.0",
        "id": derived_id("shop", "triage", "/tests/http", "s-1", "reply"),
        "source": "/agents/shop/triage",
        "type": "com.example.triaged",
        "datacontenttype": "application/json",
        "traceparent": TRACEPARENT,
        "rouserun": root_run_id("/tests/http", "s-1"),
        "data": {"echo": {"ticket": 8}},
    }


def test_none_is_202_without_body(runtime: RunningRuntime) -> None:
    response = httpx.post(runtime.url, headers=binary_headers("test.none", "n-1"), content=b"{}")
    assert (response.status_code, response.content) == (202, b"")
    assert not any(k.startswith("ce-") for k in response.headers)


def test_binary_data_reaches_the_skill_untouched(runtime: RunningRuntime) -> None:
    blob = bytes(range(256)) + b"\xff\xfe{not json"
    response = httpx.post(
        runtime.url,
        headers=binary_headers("test.inspect", "bin-1", "application/octet-stream"),
        content=blob,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"python_type": "bytes", "hex": blob.hex(), "value": None}


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/octet-stream", "text/plain"]
)
def test_empty_body_is_an_event_without_data(runtime: RunningRuntime, content_type: str) -> None:
    response = httpx.post(
        runtime.url,
        headers=binary_headers("test.inspect", f"empty-{content_type}", content_type),
        content=b"",
    )
    assert (response.status_code, response.json()) == (
        200,
        {"python_type": "NoneType", "hex": None, "value": None},
    )


def test_text_data_is_a_string(runtime: RunningRuntime) -> None:
    response = httpx.post(
        runtime.url,
        headers=binary_headers("test.inspect", "txt-1", "text/plain; charset=utf-8"),
        content="héllo".encode(),
    )
    assert response.json() == {"python_type": "str", "hex": None, "value": "héllo"}


def test_bytes_reply_is_octet_stream_in_both_modes(runtime: RunningRuntime) -> None:
    blob = b"\x00\x01\xffraw"
    response = httpx.post(
        runtime.url,
        headers=binary_headers("test.bytes", "by-1", "application/octet-stream"),
        content=blob,
    )
    assert (response.status_code, response.headers["content-type"], response.content) == (
        200,
        "application/octet-stream",
        blob,
    )
    event = {
        "specversion": "1.0",
        "id": "by-2",
        "source": "/tests/http",
        "type": "test.bytes",
        "data_base64": base64.b64encode(blob).decode(),
    }
    response = httpx.post(
        runtime.url,
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(event),
    )
    reply = response.json()
    assert (reply["datacontenttype"], base64.b64decode(reply["data_base64"])) == (
        "application/octet-stream",
        blob,
    )


def test_returned_cloudevent_passes_through_with_trace(runtime: RunningRuntime) -> None:
    response = httpx.post(
        runtime.url,
        headers=binary_headers("test.cloudevent", "ce-1", traceparent=TRACEPARENT),
        content=b"{}",
    )
    assert response.status_code == 200
    headers = {k: v for k, v in response.headers.items() if k.startswith("ce-")}
    assert headers.pop("ce-time")
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "custom-1",
        "ce-source": "/custom",
        "ce-type": "custom.made",
        "ce-subject": "s1",
        "ce-traceparent": TRACEPARENT,
        "ce-rouserun": root_run_id("/tests/http", "ce-1"),
    }
    assert response.json() == {"custom": True}


def test_skill_exception_is_500_json_and_retries_run_again(runtime: RunningRuntime) -> None:
    for _ in range(2):  # a failed run is not recorded as done: the broker's retry runs again
        response = httpx.post(
            runtime.url, headers=binary_headers("test.fail", "f-1"), content=b"{}"
        )
        assert response.status_code == 500
        assert response.json() == {
            "error": "skill failed",
            "detail": "ValueError: the skill failed on purpose",
        }
    metrics = httpx.get(f"{runtime.url}/metrics").text
    assert 'rouse_invocations_total{agent="shop",outcome="error",skill="triage"} 2.0' in metrics
    lines = [json.loads(line) for line in runtime.logs().splitlines() if '"f-1"' in line]
    failed = [line for line in lines if line["msg"] == "skill failed"]
    assert len(failed) == 2 and "exc_info" not in failed[0]
    assert "ValueError: the skill failed on purpose" in failed[0]["exception"]  # the traceback


def test_unserializable_reply_is_500_and_not_left_claimed(runtime: RunningRuntime) -> None:
    for _ in range(2):  # answered the same each time: the claim was released, not left running
        response = httpx.post(
            runtime.url, headers=binary_headers("test.unserializable", "u-1"), content=b"{}"
        )
        assert (response.status_code, response.json()) == (
            500,
            {
                "error": "invalid reply",
                "detail": "the skill's return value cannot be sent as an event: "
                "TypeError: Object of type set is not JSON serializable",
            },
        )


def test_state_round_trip(runtime: RunningRuntime) -> None:
    response = httpx.post(
        runtime.url, headers=binary_headers("test.state", "st-1"), content=b'"hi"'
    )
    assert response.json() == {"stored": "hi"}


def test_checkpoints_resume_across_events(runtime: RunningRuntime) -> None:
    first = httpx.post(runtime.url, headers=binary_headers("test.resume", "r-1"), content=b"{}")
    second = httpx.post(runtime.url, headers=binary_headers("test.resume", "r-2"), content=b"{}")
    assert (first.json(), second.json()) == (
        {"previous": None, "now": {"n": 1}, "own_checkpoint": None},
        {"previous": {"n": 1}, "now": {"n": 2}, "own_checkpoint": None},
    )


def test_health_ready_and_unknown_paths(runtime: RunningRuntime) -> None:
    assert httpx.get(f"{runtime.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{runtime.url}/readyz").json() == {"status": "ready"}
    missing = httpx.get(f"{runtime.url}/nope")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not found", "detail": "GET /nope: Not Found"},
    )
    wrong = httpx.get(runtime.url)
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method not allowed")


def test_metrics_pass_promtool_and_name_the_contract(
    runtime: RunningRuntime, tmp_path: Path
) -> None:
    httpx.post(runtime.url, headers=binary_headers("test.echo", "m-1"), content=b"{}")
    text = httpx.get(f"{runtime.url}/metrics").text
    promtool = require_tool(
        "promtool", "install it with `bash hack/system-deps.sh` (Debian prometheus)"
    )
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE rouse_")}
    assert families == {
        "rouse_invocations_total",
        "rouse_invocation_duration_seconds",
        "rouse_cold_starts_total",
        "rouse_startup_seconds",
        "rouse_inflight",
        "rouse_tokens_total",
        "rouse_cost_usd_total",
        "rouse_tool_calls_total",
        "rouse_tool_call_duration_seconds",
        "rouse_steps_total",
        "rouse_budget_exceeded_total",
        "rouse_stop_marks_read_timestamp_seconds",
    }
    labels = 'agent="shop",skill="triage"'
    assert f"rouse_cold_starts_total{{{labels}}} 1.0" in text
    assert f"rouse_inflight{{{labels}}} 0.0" in text
    startup = next(line for line in text.splitlines() if line.startswith("rouse_startup_seconds{"))
    assert 0 < float(startup.split()[-1]) < 30
