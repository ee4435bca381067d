"""Durations as the Agent spec writes them: Go style, `15m`, `10h`, `1h30m`, `1.5h`, `90s`."""

from __future__ import annotations

import re

# The CRD's pattern for spec durations (warmPool.window, schedules[].duration).
_WHOLE = re.compile(r"^([0-9]+(\.[0-9]+)?(s|m|h))+$")
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h)")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a spec duration; a bare number is seconds already."""
    if isinstance(text, int | float):
        return float(text)
    if not _WHOLE.match(text):
        raise ValueError(f"bad duration {text!r}: expected e.g. '15m', '10h', '1h30m', '90s'")
    return sum(float(value) * _UNIT[unit] for value, unit in _PART.findall(text))
