"""Durations as the Agent spec writes them: ISO-8601 (delivery) and Go style (scaling)."""

from __future__ import annotations

import re

_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_ISO_SECONDS = {
    "weeks": 604800.0,
    "days": 86400.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
}

_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def iso8601_seconds(text: str) -> float:
    """Seconds in an ISO-8601 duration such as ``PT1S`` or ``PT0.5S`` (Knative's backoffDelay)."""
    match = _ISO.match(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration (expected e.g. PT1S, PT0.5S, PT2M)")
    return sum(float(v) * _ISO_SECONDS[k] for k, v in match.groupdict().items() if v is not None)


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration such as ``30s``, ``1m30s`` or ``0s`` (Knative's retention period)."""
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    parts = _GO_PART.findall(stripped)
    if not parts or "".join(number + unit for number, unit in parts) != stripped:
        raise ValueError(f"{text!r} is not a duration (expected e.g. 0s, 30s, 1m30s, 500ms)")
    return sum(float(number) * _GO_SECONDS[unit] for number, unit in parts)
