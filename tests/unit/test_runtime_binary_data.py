"""Events without a content type carry bytes; replies holding bytes, through real HTTP.

Binary-mode data with no content type reaches the skill as the exact bytes
sent. A reply of bytes is an application/octet-stream event; bytes inside JSON
cannot be sent, which is a 500 JSON error naming the problem, with the claim
released so the broker's retry runs again at once (it used to wait on the
stale claim until the broker timed out).
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rouse_runtime.events import derived_id
from rouse_testing.runtime import RunningRuntime, start_runtime

HANDLERS = Path(__file__).parent / "runtime_handlers"
SOURCE = "/tests/binary"
BLOB = b"\x00\x01\xfe\xffraw bytes"
# Far below ROUSE_TIMEOUT_SECONDS, the wait on a claim left behind: a stale claim fails the test.
TIMEOUT = 5.0
BYTES_IN_JSON = {
    "error": "invalid reply",
    "detail": "the skill's return value cannot be sent as an event: "
    "TypeError: Object of type bytes is not JSON serializable"
    " (return bytes alone for an application/octet-stream reply, or a CloudEvent with"
    " bytes data; inside JSON, encode them, e.g. base64)",
}


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs") / "runs.txt"


@pytest.fixture(scope="module")
def runtime(runs_file: Path) -> Iterator[RunningRuntime]:
    rt = start_runtime(
        {
            "ROUSE_HANDLER": "rouse_test_skills:skill",
            "ROUSE_AGENT": "shop",
            "ROUSE_SKILL": "blobs",
            "ROUSE_TEST_RUNS": str(runs_file),
            "ROUSE_MAX_STEPS": "3",
            "ROUSE_TIMEOUT_SECONDS": "30",
        },
        HANDLERS,
    )
    yield rt
    rt.stop()


def undeclared(type_: str, id_: str) -> dict[str, str]:
    """Binary-mode headers with no content type (so no datacontenttype)."""
    return {"ce-specversion": "1.0", "ce-id": id_, "ce-source": SOURCE, "ce-type": type_}


def post(rt: RunningRuntime, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(rt.url, headers=headers, content=body, timeout=TIMEOUT)


def runs_of(runs_file: Path, id_: str) -> int:
    if not runs_file.exists():
        return 0
    return sum(1 for line in runs_file.read_text().splitlines() if line == f"{SOURCE} {id_}")


def duplicate_count(rt: RunningRuntime) -> float:
    series = 'rouse_invocations_total{agent="shop",outcome="duplicate",skill="blobs"} '
    for line in httpx.get(f"{rt.url}/metrics").text.splitlines():
        if line.startswith(series):
            return float(line.removeprefix(series))
    pytest.fail(f"no {series.strip()} in /metrics")


def test_undeclared_data_reaches_the_skill_as_bytes(runtime: RunningRuntime) -> None:
    response = post(runtime, undeclared("test.inspect", "nd-inspect"), BLOB)
    assert (response.status_code, response.json()) == (
        200,
        {"python_type": "bytes", "hex": BLOB.hex(), "value": None},
    )


def test_bytes_inside_json_reply_is_500_naming_it_and_retry_runs_again(
    runtime: RunningRuntime, runs_file: Path
) -> None:
    for attempt in (1, 2):  # each broker retry runs the skill again and gets the same answer
        response = post(runtime, undeclared("test.echo_counted", "nd-echo"), BLOB)
        assert (response.status_code, response.headers["content-type"], response.json()) == (
            500,
            "application/json",
            BYTES_IN_JSON,
        )
        assert runs_of(runs_file, "nd-echo") == attempt
    metrics = httpx.get(f"{runtime.url}/metrics").text
    assert 'rouse_invocations_total{agent="shop",outcome="error",skill="blobs"} 2.0' in metrics


def test_concurrent_duplicates_of_an_unsendable_reply_all_get_the_error(
    runtime: RunningRuntime, runs_file: Path
) -> None:
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(
            pool.map(
                lambda _: post(runtime, undeclared("test.echo_counted", "nd-dup"), BLOB), range(3)
            )
        )
    assert [(r.status_code, r.json()) for r in responses] == [(500, BYTES_IN_JSON)] * 3
    assert 1 <= runs_of(runs_file, "nd-dup") <= 3
    retry = post(runtime, undeclared("test.echo_counted", "nd-dup"), BLOB)
    assert (retry.status_code, retry.json()) == (500, BYTES_IN_JSON)


def test_bytes_reply_is_octet_stream_and_redelivery_answers_the_same_bytes(
    runtime: RunningRuntime,
) -> None:
    duplicates = duplicate_count(runtime)
    first = post(runtime, undeclared("test.bytes", "nd-bytes"), BLOB)
    again = post(runtime, undeclared("test.bytes", "nd-bytes"), BLOB)
    for response in (first, again):
        assert (
            response.status_code,
            response.headers["content-type"],
            response.headers["ce-id"],
            response.content,
        ) == (
            200,
            "application/octet-stream",
            derived_id("shop", "blobs", SOURCE, "nd-bytes", "reply"),
            BLOB,
        )
    assert duplicate_count(runtime) == duplicates + 1


def test_structured_event_without_datacontenttype_bytes_reply_is_base64(
    runtime: RunningRuntime,
) -> None:
    event = {
        "specversion": "1.0",
        "id": "nd-structured",
        "source": SOURCE,
        "type": "test.bytes",
        "data_base64": base64.b64encode(BLOB).decode(),
    }
    response = httpx.post(
        runtime.url,
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(event),
        timeout=TIMEOUT,
    )
    reply = response.json()
    assert (
        response.status_code,
        reply["datacontenttype"],
        base64.b64decode(reply["data_base64"]),
        "data" in reply,
    ) == (200, "application/octet-stream", BLOB, False)


def test_returned_cloudevent_with_bytes_data_is_octet_stream(runtime: RunningRuntime) -> None:
    response = post(runtime, undeclared("test.bytes_event", "nd-ce"), BLOB)
    assert (
        response.status_code,
        response.headers["content-type"],
        response.headers["ce-type"],
        response.content,
    ) == (200, "application/octet-stream", "custom.blob", BLOB)


def test_budget_stop_with_unsendable_partial_still_replies(runtime: RunningRuntime) -> None:
    response = post(runtime, undeclared("test.bytes_partial", "nd-partial"), BLOB)
    assert (response.status_code, response.headers["ce-type"]) == (
        200,
        "dev.rouse.budget.exceeded",
    )
    body = response.json()
    assert (body["limit"], body["checkpoint"], body["checkpoint_error"]) == (
        "steps",
        None,
        "partial result not checkpointed: TypeError: Object of type bytes is not JSON serializable",
    )


def test_returned_cloudevent_with_typed_and_non_latin1_attributes_is_sent(
    runtime: RunningRuntime,
) -> None:
    # Binary mode: CloudEvents string forms, and percent-encoding (UTF-8) where a header
    # cannot carry the value; before, sending failed after the result was stored, so
    # every retry failed the same way.
    for _ in range(2):  # the first answer and the stored one
        response = post(runtime, undeclared("test.typed_extensions", "nd-typed"), b"")
        ce = {k: v for k, v in response.headers.items() if k.startswith("ce-")}
        assert ce.pop("ce-time")
        assert ce.pop("ce-rouserun")  # the run, added where the skill's event has none
        assert (response.status_code, ce) == (
            200,
            {
                "ce-specversion": "1.0",
                "ce-id": "typed-1",
                "ce-source": "/custom",
                "ce-type": "custom.typed",
                "ce-priority": "5",
                "ce-urgent": "true",
                "ce-subject": "na%C3%AFve%20%E2%9C%93",
            },
        )
    structured = httpx.post(
        runtime.url,
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(
            {
                "specversion": "1.0",
                "id": "nd-typed-s",
                "source": SOURCE,
                "type": "test.typed_extensions",
            }
        ),
        timeout=TIMEOUT,
    )
    body = structured.json()
    assert (structured.status_code, body["priority"], body["urgent"], body["subject"]) == (
        200,
        5,
        True,
        "naïve ✓",
    )
