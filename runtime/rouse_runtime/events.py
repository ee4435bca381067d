"""CloudEvents in and out over HTTP, through the cloudevents SDK.

`parse_event` turns a request into a CloudEvent or an `EventError` (status,
error, detail) naming what is wrong: the SDK's own messages are misleading for
some inputs (a binary event missing `ce-id` is reported as missing
specversion) and echo whole bodies, so the error path names the problem itself.
Binary-mode data is decoded by its content type: JSON types become Python
values (strict UTF-8 and JSON, else 400), `text/*` a str, anything else reaches
the skill as the exact bytes sent.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from cloudevents import exceptions as ce_errors
from cloudevents.conversion import to_binary, to_json, to_structured
from cloudevents.http import CloudEvent, from_http, from_json
from cloudevents.sdk.converters.binary import BinaryHTTPCloudEventConverter
from cloudevents.sdk.converters.structured import JSONHTTPCloudEventConverter
from cloudevents.sdk.event import v1

from rouse_runtime.ce_attributes import InvalidAttributeError, check_attributes, check_names

Mode = Literal["binary", "structured"]

SPECVERSIONS = ("1.0",)  # what Knative speaks; ce_attributes checks the 1.0 rules
REQUIRED = ("id", "source", "type")
STRUCTURED_JSON = "application/cloudevents+json"
BUDGET_EXCEEDED_TYPE = "dev.rouse.budget.exceeded"
TRACE_EXTENSIONS = ("traceparent", "tracestate")
# The SDK's binary-mode reader, made once: `from_http` builds a marshaller (both
# converters) per call and copies the headers twice more, a third of its time.
_BINARY = BinaryHTTPCloudEventConverter()
_STRUCTURED = JSONHTTPCloudEventConverter()  # which from_http tries first
# Namespace for deterministic ids of replies and emitted events: a rerun after a
# 500 produces the same ids, so downstream idempotency sees duplicates as such.
_ID_NAMESPACE = uuid.UUID("5b0e8d1c-5f0f-4d0a-9a57-7d1b6c0a0e11")


class EventError(Exception):
    """A request that is not an acceptable CloudEvent; answered as JSON with `status`."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def body(self) -> dict[str, str]:
        return {"error": self.error, "detail": self.detail}


def media_type(content_type: str | None) -> str:
    """`Application/JSON; charset=utf-8` → `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    mt = media_type(content_type)
    return mt in ("application/json", "text/json") or mt.endswith("+json")


@functools.lru_cache(maxsize=64)  # a stream of events mostly repeats one content type
def _binary_data(content_type: str | None) -> Any:
    """The unmarshaller for a binary-mode body of this content type."""
    mt = media_type(content_type)
    json_body = is_json(mt)
    text_body = json_body or mt.startswith("text/")

    def unmarshal(body: bytes | str) -> Any:
        raw = body.encode("latin-1") if isinstance(body, str) else body
        if not raw:
            return None  # an event without data, whatever content type it names
        if not text_body:
            return bytes(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventError(
                400,
                "invalid data",
                f"body declared {mt} is not valid UTF-8: {exc.reason} at byte {exc.start}",
            ) from None
        if not json_body:
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise EventError(
                400,
                "invalid data",
                f"body declared {mt} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            ) from None

    return unmarshal


def _check_attributes(event: CloudEvent, where: str, *, sent_time: bool) -> CloudEvent:
    """The spec's naming rules and type system on what the SDK parsed (ce_attributes.py);
    a `time` the event did not carry is the SDK's own "now"."""
    try:
        check_attributes(event.get_attributes(), made=None if sent_time else "time")
    except InvalidAttributeError as exc:
        raise EventError(400, "invalid attribute", f"{exc} ({where})") from None
    return event


def _parse_binary(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    missing = [name for name in REQUIRED if not headers.get(f"ce-{name}")]
    if missing:
        names = ", ".join(missing)
        heads = ", ".join(f"ce-{name}" for name in missing)
        raise EventError(
            400, "missing attribute", f"binary-mode event lacks {names} (headers {heads})"
        )
    specversion = headers["ce-specversion"]
    if specversion not in SPECVERSIONS:
        raise EventError(
            400,
            "unsupported specversion",
            f"specversion {specversion!r}; supported: {', '.join(SPECVERSIONS)}",
        )
    unmarshal = _binary_data(headers.get("content-type"))
    try:
        event = _from_binary(headers, body, unmarshal)
    except EventError:
        raise
    except ce_errors.DataUnmarshallerError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, EventError):
            raise cause from None
        raise EventError(400, "invalid data", _short(exc)) from None
    except Exception as exc:  # never let a malformed request become a 500
        raise EventError(400, "malformed event", _short(exc)) from None
    return _check_attributes(event, "binary mode", sent_time="ce-time" in headers)


def _from_binary(headers: Mapping[str, str], body: bytes, unmarshal: Any) -> CloudEvent:
    """`from_http` for a binary-mode request: the SDK's binary converter reads it into
    its v1 event, whose attributes and extensions make the CloudEvent (as `from_http`
    ends). The converter wants a dict keyed by lower-case names (ASGI's already are)."""
    if not isinstance(headers, dict):
        headers = {name.lower(): value for name, value in headers.items()}
    if _STRUCTURED.can_read(headers.get("content-type"), headers):
        return from_http(headers, body, data_unmarshaller=unmarshal)  # as the SDK would
    empty = v1.Event()  # type: ignore[no-untyped-call]
    read = _BINARY.read(empty, headers, body, unmarshal)
    attributes = read.Properties()
    data = attributes.pop("data", None)
    attributes.pop("extensions", None)
    attributes.update(read.extensions)
    return CloudEvent.create(attributes, data)


def _parse_structured(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    content_type = headers.get("content-type")
    mt = media_type(content_type)
    if mt != STRUCTURED_JSON:
        if mt.startswith("application/cloudevents-batch"):
            raise EventError(
                415,
                "unsupported media type",
                f"batched CloudEvents ({mt}) are not accepted; send one event per request",
            )
        if mt.startswith("application/cloudevents"):
            raise EventError(
                415,
                "unsupported media type",
                f"structured format {mt!r} is not supported; use {STRUCTURED_JSON}",
            )
        shown = repr(content_type) if content_type else "none"
        raise EventError(
            415,
            "unsupported media type",
            f"not a CloudEvent: no ce-specversion header (binary mode) and content type {shown} is not {STRUCTURED_JSON} (structured mode)",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(
            400,
            "invalid JSON",
            f"structured event is not valid UTF-8: {exc.reason} at byte {exc.start}",
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(
            400,
            "invalid JSON",
            f"structured event is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    if not isinstance(raw, dict):
        raise EventError(
            400, "invalid JSON", f"structured event must be a JSON object, got {type(raw).__name__}"
        )
    if "specversion" not in raw:
        raise EventError(400, "missing attribute", "structured event lacks specversion")
    if raw["specversion"] not in SPECVERSIONS:
        raise EventError(
            400,
            "unsupported specversion",
            f"specversion {raw['specversion']!r}; supported: {', '.join(SPECVERSIONS)}",
        )
    missing = [name for name in REQUIRED if name not in raw]
    if missing:
        raise EventError(400, "missing attribute", f"structured event lacks {', '.join(missing)}")
    try:
        check_names(raw)
    except InvalidAttributeError as exc:
        raise EventError(400, "invalid attribute", f"{exc} (structured mode)") from None
    try:
        event = from_http(headers, body)
    except Exception as exc:  # never let a malformed request become a 500
        raise EventError(400, "malformed event", _short(exc)) from None
    return _check_attributes(event, "structured mode", sent_time="time" in raw)


def parse_event(headers: Mapping[str, str], body: bytes) -> tuple[CloudEvent, Mode]:
    """The CloudEvent in a request, and which HTTP mode carried it."""
    if "ce-specversion" in headers or any(key.startswith("ce-") for key in headers):
        if "ce-specversion" not in headers:
            raise EventError(
                400,
                "missing attribute",
                "binary-mode event lacks specversion (header ce-specversion)",
            )
        return _parse_binary(headers, body), "binary"
    return _parse_structured(headers, body), "structured"


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def derived_id(*parts: str) -> str:
    """A deterministic event id from its cause (same cause, same id)."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


def trace_attributes(event: CloudEvent) -> dict[str, str]:
    """The distributed-tracing extension attributes to carry forward."""
    return {name: str(event[name]) for name in TRACE_EXTENSIONS if event.get(name)}


def new_event(
    attributes: dict[str, Any],
    data: Any,
    *,
    cause: CloudEvent | None = None,
    trace: Mapping[str, str] | None = None,
) -> CloudEvent:
    """A CloudEvent with data typed by content: bytes are octet-stream, the rest JSON.

    It carries `trace` (traceparent/tracestate), by default the cause's: with
    tracing on, the invocation's span (telemetry.py), so the next skill is its child.
    """
    attrs = dict(attributes)
    if data is not None and "datacontenttype" not in attrs:
        attrs["datacontenttype"] = (
            "application/octet-stream"
            if isinstance(data, bytes | bytearray)
            else "application/json"
        )
    attrs.setdefault("time", datetime.now(UTC).isoformat())
    if trace is None and cause is not None:
        trace = trace_attributes(cause)
    for name, value in (trace or {}).items():
        attrs.setdefault(name, value)
    return CloudEvent(attrs, data)


def _marshaller(event: CloudEvent) -> Any:
    json_data = is_json(event.get("datacontenttype")) or event.get("datacontenttype") is None

    def marshal(data: Any) -> bytes:
        if data is None:
            return b""
        if isinstance(data, bytes | bytearray):
            return bytes(data)
        if isinstance(data, str) and not json_data:
            return data.encode("utf-8")
        return json.dumps(data, separators=(",", ":")).encode("utf-8")

    return marshal


def header_value(value: Any) -> str:
    """An attribute as a binary-mode header value (CloudEvents HTTP binding, 3.1.3).

    Non-strings take their CloudEvents string form (the SDK passes an int
    extension through as an int, which no header can carry). A value a header
    cannot carry as is (a character past U+00FF, a control character) is
    percent-encoded as UTF-8 as the binding says; others go unchanged, as before.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = value if isinstance(value, str) else str(value)
    if text.isprintable() and (text.isascii() or max(text) <= "\xff"):
        return text
    return "".join(c if "!" <= c <= "~" and c not in '"%' else quote(c, safe="") for c in text)


def to_http(event: CloudEvent, mode: Mode) -> tuple[dict[str, str], bytes]:
    """Headers and body of an event in binary or structured mode."""
    if mode == "binary":
        headers, body = to_binary(event, data_marshaller=_marshaller(event))
        headers = {name: header_value(value) for name, value in headers.items()}
        if event.get("datacontenttype"):
            headers["content-type"] = header_value(event["datacontenttype"])
        return headers, body
    return to_structured(event)


def dump_event(event: CloudEvent) -> str:
    """Structured JSON of an event, for the idempotency store (bytes become data_base64)."""
    return to_json(event).decode("utf-8")


def load_event(text: str) -> CloudEvent:
    return from_json(text)
