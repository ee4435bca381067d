"""Go-style durations as the Agent spec writes them: `15m`, `10h`, `1h30m`, `1.5h`, `90s`, `500ms`.

One parser for both users: the policies (warmPool.window, schedules[].duration)
and local mode's supervisor (scaling.retention).
"""

from __future__ import annotations

import re

# The CRD's pattern for spec durations (warmPool.window, schedules[].duration).
_WHOLE = re.compile(r"^([0-9]+(\.[0-9]+)?(s|m|h))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a spec duration (the CRD allows s, m and h); a bare number is seconds already."""
    if isinstance(text, int | float):
        return float(text)
    if not _WHOLE.match(text):
        raise ValueError(f"bad duration {text!r}: expected e.g. '15m', '10h', '1h30m', '90s'")
    return go_duration_seconds(text)


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration such as ``30s``, ``1m30s`` or ``0s`` (Knative's retention period)."""
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    parts = _GO_PART.findall(stripped)
    if not parts or "".join(number + unit for number, unit in parts) != stripped:
        raise ValueError(f"{text!r} is not a duration (expected e.g. 0s, 30s, 1m30s, 500ms)")
    return sum(float(number) * _GO_SECONDS[unit] for number, unit in parts)
