"""CloudEvents 1.0 attribute rules, checked on the attributes the SDK parsed.

The cloudevents SDK parses an event but does not enforce the spec's naming rules
or type system (its `time` and `source` are plain strings, any extension name
passes). `check_attributes` applies the CloudEvents 1.0 core spec to what the SDK
returns and names the first attribute that breaks it:

- names consist of lower-case ASCII letters and digits only (the spec's MUST;
  its 20-character limit is a SHOULD and is not enforced);
- `specversion` is `1.0`; `id`, `type` are non-empty Strings; `source` is a
  non-empty URI-reference; `dataschema` an absolute URI; `time` an RFC 3339
  Timestamp; `datacontenttype` an RFC 2046 media type; `subject` non-empty;
- extension values are Strings, Booleans or Integers (32-bit signed), the
  spec's types a transport can carry (Binary, URI, Timestamp travel as Strings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

SPECVERSION = "1.0"
NAME = re.compile(r"^[a-z0-9]+$")
# RFC 3986: every character a URI-reference may hold (percent-encodings checked apart).
URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# RFC 3339 date-time (section 5.6).
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# RFC 2046 / RFC 7231 media type: type "/" subtype *( ";" parameter ).
TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
MEDIA_TYPE = re.compile(rf"^{TOKEN}/{TOKEN}(\s*;\s*{TOKEN}=({TOKEN}|\"([^\"\\]|\\.)*\"))*\s*$")
INT32 = (-(2**31), 2**31 - 1)
DATA_MEMBERS = frozenset({"data", "data_base64"})  # structured mode's data, not attributes
# Names and (name, String value) pairs found valid: a stream of events repeats its names,
# source, type and content type, so each is checked once (per KNOWN_LIMIT distinct ones).
KNOWN_LIMIT = 1024
_known_names: set[str] = set()
_known_values: set[tuple[str, str]] = set()
UNIQUE = frozenset({"id", "time"})  # different in every event: not worth remembering


class InvalidAttributeError(ValueError):
    """One attribute breaks the spec; `name` says which."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"attribute {name!r}: {detail}")
        self.name = name


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidAttributeError(name, f"must be a non-empty String, got {value!r}"[:200])
    return value


def _uri_reference(name: str, value: Any) -> str:
    text = _string(name, value)
    if not URI_CHARS.match(text) or PERCENT.search(text):
        raise InvalidAttributeError(name, f"{text!r} is not a URI-reference (RFC 3986)"[:200])
    return text


def _uri(name: str, value: Any) -> None:
    text = _uri_reference(name, value)
    if not SCHEME.match(text):
        raise InvalidAttributeError(name, f"{text!r} is not an absolute URI (no scheme)"[:200])


def _timestamp(name: str, value: Any) -> None:
    text = _string(name, value)
    try:
        if not TIMESTAMP.match(text):
            raise ValueError
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidAttributeError(name, f"{text!r} is not an RFC 3339 timestamp"[:200]) from None


def _media_type(name: str, value: Any) -> None:
    if value == "":  # an empty Content-Type header (binary mode) names no media type
        return
    text = _string(name, value)
    if not MEDIA_TYPE.match(text):
        raise InvalidAttributeError(name, f"{text!r} is not a media type (RFC 2046)"[:200])


def _extension(name: str, value: Any) -> None:
    if isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not INT32[0] <= value <= INT32[1]:
            raise InvalidAttributeError(name, f"Integer {value} is outside 32-bit signed range")
        return
    raise InvalidAttributeError(
        name, f"a {type(value).__name__} is not a CloudEvents type (String, Boolean, Integer)"
    )


CHECKS = {
    "specversion": _string,
    "id": _string,
    "source": _uri_reference,
    "type": _string,
    "subject": _string,
    "datacontenttype": _media_type,
    "dataschema": _uri,
    "time": _timestamp,
}


def check_names(names: Iterable[str]) -> None:
    """Raise InvalidAttributeError for a member name the spec forbids.

    For structured mode's JSON members as sent: the SDK lower-cases names, which
    would let `myExt` pass as `myext` (HTTP headers are case-insensitive, so
    binary mode needs no such check).
    """
    for name in names:
        if name in _known_names or name in DATA_MEMBERS:
            continue
        if not NAME.match(name):
            raise InvalidAttributeError(
                name, "names must consist of lower-case letters a-z and digits 0-9"
            )
        _remember(_known_names, name)


def check_attributes(attributes: Mapping[str, Any], *, made: str | None = None) -> None:
    """Raise InvalidAttributeError naming the first attribute the CloudEvents 1.0 spec forbids.

    `made`: an attribute the SDK filled in itself (a `time` the event did not carry,
    an RFC 3339 timestamp by construction): its name is checked, its value is not.
    """
    for name in ("id", "source", "type"):
        if name not in attributes:
            raise InvalidAttributeError(name, "is required")
    if attributes.get("specversion") != SPECVERSION:
        raise InvalidAttributeError(
            "specversion", f"{attributes.get('specversion')!r} is not supported; use 1.0"
        )
    check_names(attributes)
    for name, value in attributes.items():
        if name == made:
            continue
        if type(value) is not str or name in UNIQUE:
            CHECKS.get(name, _extension)(name, value)
        elif (name, value) not in _known_values:
            CHECKS.get(name, _extension)(name, value)
            _remember(_known_values, (name, value))


def _remember(known: set[Any], item: Any) -> None:
    if len(known) >= KNOWN_LIMIT:
        known.clear()
    known.add(item)
