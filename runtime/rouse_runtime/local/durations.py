"""ISO-8601 durations as the Agent spec writes them (delivery); Go style ones are
parsed by `rouse_runtime.policies.durations`."""

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


def iso8601_seconds(text: str) -> float:
    """Seconds in an ISO-8601 duration such as ``PT1S`` or ``PT0.5S`` (Knative's backoffDelay)."""
    match = _ISO.match(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration (expected e.g. PT1S, PT0.5S, PT2M)")
    return sum(float(v) * _ISO_SECONDS[k] for k, v in match.groupdict().items() if v is not None)
