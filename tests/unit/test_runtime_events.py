"""The runtime reads binary-mode events exactly as the SDK's `from_http` does."""

from __future__ import annotations

import pytest
from cloudevents.http import CloudEvent, from_http
from rouse_runtime.events import EventError, _binary_data, parse_event

BASE = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/s", "ce-type": "t.x"}
CASES = [
    ({**BASE, "content-type": "application/json"}, b'{"a": [1, "b"]}'),
    ({**BASE, "content-type": "application/json; charset=utf-8"}, b'"text"'),
    (BASE, b"\x00\x01raw"),  # no content type: bytes
    ({**BASE, "content-type": ""}, b"abc"),
    ({**BASE, "content-type": "text/plain"}, "héllo".encode()),
    ({**BASE, "content-type": "application/octet-stream"}, b""),
    ({**BASE, "content-type": "application/json"}, b""),
    (
        {
            **BASE,
            "content-type": "application/json",
            "ce-time": "2020-01-02T03:04:05Z",
            "ce-subject": "s-1",
            "ce-dataschema": "https://example.com/s",
            "ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "ce-myext": "v",
            "host": "127.0.0.1",
            "user-agent": "test",
        },
        b"{}",
    ),
    # Headers the SDK's own event holds apart: read by its converter, as from_http does.
    ({**BASE, "ce-datacontenttype": "text/plain"}, b"abc"),
    ({**BASE, "content-type": "application/json", "ce-datacontenttype": "text/plain"}, b"1"),
    ({**BASE, "ce-datacontenttype": "text/plain", "content-type": "application/json"}, b"1"),
    ({**BASE, "content-type": "text/plain", "ce-data": "header data"}, b"body data"),
    ({**BASE, "content-type": "text/plain", "ce-Myext": "v"}, b"x"),
]


def comparable(event: CloudEvent, sent_time: bool) -> tuple[dict[str, object], object, type]:
    attributes = dict(event.get_attributes())
    if not sent_time:  # both default it to "now", microseconds apart
        assert attributes.pop("time")
    return attributes, event.data, type(event.data)


@pytest.mark.parametrize(("headers", "body"), CASES)
def test_binary_events_equal_sdk_from_http(headers: dict[str, str], body: bytes) -> None:
    unmarshal = _binary_data(headers.get("content-type"))
    expected = from_http(headers, body, data_unmarshaller=unmarshal)
    actual, mode = parse_event(headers, body)
    assert mode == "binary"
    sent_time = "ce-time" in headers
    assert comparable(actual, sent_time) == comparable(expected, sent_time)


def test_cloudevents_content_type_with_ce_headers_is_left_to_the_sdk() -> None:
    with pytest.raises(EventError) as bad:
        parse_event({**BASE, "content-type": "application/cloudevents+json"}, b"{}")
    assert (bad.value.status, bad.value.error) == (400, "malformed event")


def test_parse_event_binary_1_0_checks_required_attributes() -> None:
    event, mode = parse_event({**BASE, "content-type": "application/json"}, b'{"n": 1}')
    assert (mode, event["id"], event["source"], event["type"], event.data) == (
        "binary",
        "e-1",
        "/s",
        "t.x",
        {"n": 1},
    )
    with pytest.raises(EventError) as bad:
        parse_event({**BASE, "ce-source": ""}, b"")
    assert bad.value.body() == {
        "error": "missing attribute",
        "detail": "binary-mode event lacks source (headers ce-source)",
    }


def test_a_value_found_valid_for_one_attribute_is_still_checked_for_another() -> None:
    # Valid values are remembered per attribute name: "a b" is a fine extension value,
    # never a source (not a URI-reference), however often it came as the extension.
    for n in range(2):
        event, _ = parse_event({**BASE, "ce-id": f"e-{n}", "ce-myext": "a b"}, b"")
        assert event["myext"] == "a b"
    with pytest.raises(EventError) as bad:
        parse_event({**BASE, "ce-source": "a b"}, b"")
    assert (bad.value.status, bad.value.error) == (400, "invalid attribute")
    assert "'source'" in bad.value.detail


def test_header_values_take_string_forms_and_percent_encoding_only_where_needed() -> None:
    from rouse_runtime.events import header_value

    values = [
        "/agents/shop/triage",
        "with spaces and 100%",  # a header carries these: unchanged, as before
        "héllo",  # latin-1: unchanged, as before
        "tick ✓",
        "two\nlines",
        5,
        True,
        1.5,
    ]
    assert [header_value(v) for v in values] == [
        "/agents/shop/triage",
        "with spaces and 100%",
        "héllo",
        "tick%20%E2%9C%93",
        "two%0Alines",
        "5",
        "true",
        "1.5",
    ]
