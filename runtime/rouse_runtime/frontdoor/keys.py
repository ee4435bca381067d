"""Who may call a front door: `Authorization: Bearer <key>` with a key of ROUSE_API_KEYS.

Checked from the request headers before the body is read or anything runs, so a
caller without a valid key costs no invocation, no tokens and no ledger line.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from rouse_runtime.frontdoor.settings import FrontDoor

SCHEME = b"bearer "


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of the request's `Authorization: Bearer` header (ASGI headers), or None."""
    for name, value in headers:
        if name == b"authorization" and value[: len(SCHEME)].lower() == SCHEME:
            return value[len(SCHEME) :].strip()
    return None


def admitted(door: FrontDoor, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the caller may use the front door (always, when it is public)."""
    if door.public:
        return True
    token = bearer(headers)
    if not token:
        return False
    # Compare with every key in constant time: how many keys matched leaks nothing useful.
    found = False
    for key in door.keys:
        found |= hmac.compare_digest(token, key.encode())
    return found
