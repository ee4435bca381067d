"""Local mode's front-door wiring (pure): the env a front door's process gets, and the warnings."""

from __future__ import annotations

from typing import Any

from rouse_runtime.local.frontdoor import front_door_env, path, warnings

KEYS = {"apiKeys": {"secretKeyRef": {"name": "k", "key": "keys"}}}


def agent(*skills: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "shop"}, "spec": {"skills": list(skills)}}


def test_a_keyed_front_door_is_open_only_without_keys_and_says_so() -> None:
    keyed = {"name": "ask", "handler": "m:f", "http": KEYS}
    public = {"name": "hello", "handler": "m:f", "http": {"public": True}}
    event = {"name": "triage", "handler": "m:f", "events": [{"type": "t"}]}
    url = "http://127.0.0.1:8080/"
    progress = {"ROUSE_PROGRESS_URL": "http://127.0.0.1:8080/chains/{run}"}
    assert front_door_env(keyed, {}, url) == {**progress, "ROUSE_FRONT_DOOR": "public"}
    assert front_door_env(keyed, {"ROUSE_API_KEYS": "k-1"}, url) == progress
    assert front_door_env(public, {}, url) == progress
    assert front_door_env(event, {}, url) == {}
    assert path("shop", "ask") == "/agents/shop/ask"
    (warning,) = warnings(agent(keyed, public, event), {"ROUSE_API_KEYS": " , "})
    assert warning.startswith("WARNING front door ask (/agents/shop/ask) is served OPEN")
    assert warnings(agent(keyed, public, event), {"ROUSE_API_KEYS": "k-1"}) == []
