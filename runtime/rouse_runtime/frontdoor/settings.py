"""A front door's settings from the env contract (ROUSE_FRONT_DOOR, ROUSE_API_KEYS, ...).

Pure and small: `load_config` calls it at every skill's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rouse_runtime.envnames import ENV_API_KEYS, ENV_FRONT_DOOR, ENV_PROGRESS_URL

PUBLIC = "public"
KEYS = "keys"


@dataclass(frozen=True)
class FrontDoor:
    """How a front door admits callers and where it reads a run's progress."""

    public: bool
    keys: frozenset[str] = field(default=frozenset(), repr=False)  # never in a log line
    progress_url: str | None = None  # a URL template with {run}; None: no progress source yet


def parse_keys(raw: str) -> frozenset[str]:
    """Keys one per line or comma-separated (a Secret's value or an exported variable)."""
    return frozenset(k.strip() for k in raw.replace(",", "\n").splitlines() if k.strip())


def load_front_door(env: Mapping[str, str]) -> FrontDoor | None:
    """None for an event skill; ValueError naming the variable when a front door is misset."""
    mode = env.get(ENV_FRONT_DOOR, "").strip()
    if not mode:
        return None
    progress = env.get(ENV_PROGRESS_URL, "").strip() or None
    if progress is not None and "{run}" not in progress:
        raise ValueError(f"{ENV_PROGRESS_URL}={progress!r} must contain {{run}}")
    if mode == PUBLIC:
        return FrontDoor(public=True, progress_url=progress)
    if mode != KEYS:
        raise ValueError(f"{ENV_FRONT_DOOR}={mode!r} must be {KEYS} or {PUBLIC}")
    keys = parse_keys(env.get(ENV_API_KEYS, ""))
    if not keys:
        # Serving a keyed front door open because its Secret is empty would be the worst default.
        raise ValueError(
            f"{ENV_FRONT_DOOR}={KEYS} but {ENV_API_KEYS} holds no key: put the accepted keys in"
            " the Secret of spec.skills[].http.apiKeys, one per line"
        )
    return FrontDoor(public=False, keys=keys, progress_url=progress)
