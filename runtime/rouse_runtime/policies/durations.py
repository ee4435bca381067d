"""Durations as the Agent spec writes them (`15m`, `10h`, `1h30m`, `90s`)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a spec duration; a bare number is seconds already."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"bad duration {text!r}: expected e.g. '15m', '10h', '1h30m', '90s'")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)
