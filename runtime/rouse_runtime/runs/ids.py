"""Which run an event belongs to: the `rouserun` extension attribute, or its own id.

The first event of a run carries no `rouserun`: its run id is derived from its
`source` and `id` (a UUIDv5, as hex), so the runtime, the parking service and
local mode's broker all name the run the same without coordinating, and a
redelivery of that event is the same run. Everything the run causes carries the
id forward (replies, emitted events), as trace context rides on every event.

A run id is a lower-case DNS-label-like token (1-64 of `a-z0-9-`, no leading or
trailing `-`): it is used in URLs, store keys and terminals, so a client that
sets its own (e.g. `order-1234`) gets a clear 400 when it does not fit.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

RUN_ATTRIBUTE = "rouserun"
# A fan-in join part's attributes (runs/join.py): its join (a run id), index and count. Here,
# not there, so the server reads them on every reply without importing the join machinery.
JOIN_ATTRIBUTE = "rousejoin"
PART_ATTRIBUTE = "rousepart"
PARTS_ATTRIBUTE = "rouseparts"
JOIN_ATTRIBUTES = (JOIN_ATTRIBUTE, PART_ATTRIBUTE, PARTS_ATTRIBUTE)
_RUN_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
_PERSON = b"rouse-run"  # the hash's personalization: run ids are a kind of their own


class InvalidRunIdError(ValueError):
    """A `rouserun` value that is not a run id; the message names the attribute."""


def check_run_id(value: Any) -> str:
    """value as a run id, or InvalidRunIdError saying what a run id looks like."""
    if not isinstance(value, str) or not _RUN_ID.match(value):
        shown = repr(value)[:80]
        raise InvalidRunIdError(
            f"extension attribute {RUN_ATTRIBUTE}={shown} is not a run id: 1-64 characters"
            " of a-z, 0-9 and '-', starting and ending with a letter or digit"
        )
    return value


def root_run_id(source: str, event_id: str) -> str:
    """The run id of an event that starts a run (no `rouserun`): 32 hex digits (BLAKE2b,
    a third of uuid5's cost on every root event)."""
    raw = f"{source}\x1f{event_id}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=16, person=_PERSON).hexdigest()


def run_of(event: Any) -> str:
    """The run of a CloudEvent (or a structured-mode dict): its `rouserun`, else its own.

    Does not validate: the runtime refuses a bad `rouserun` at intake (400), and
    other components read events that went through it or through the broker.
    """
    value = event.get(RUN_ATTRIBUTE)
    if value:
        return str(value)
    return root_run_id(str(event.get("source")), str(event.get("id")))
