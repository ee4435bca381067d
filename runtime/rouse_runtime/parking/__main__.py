"""`python -m rouse_runtime.parking`: serve the parking service from env."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import uvicorn

from rouse_runtime.parking.app import (
    DEFAULT_BROKER_INGRESS,
    DEFAULT_MAX_BODY_BYTES,
    ParkingSettings,
    create_app,
)
from rouse_runtime.parking.credential import ENV_PARKING_TOKEN

DEFAULT_STATE_URL = "sqlite:///tmp/rouse/state.db"


def settings_from_env(env: dict[str, str] | None = None) -> ParkingSettings:
    env = dict(os.environ if env is None else env)
    settings = ParkingSettings(
        state_url=env.get("ROUSE_STATE_URL", DEFAULT_STATE_URL),
        broker_ingress=env.get("ROUSE_BROKER_INGRESS", DEFAULT_BROKER_INGRESS),
        broker_url=env.get("ROUSE_BROKER_URL") or None,
        # Match the skills' ROUSE_MAX_BODY_BYTES: a dead letter refused here is lost.
        max_body_bytes=int(env.get("ROUSE_MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES),
    )
    # A skill's address when a replay request names none: {service}, {namespace}, {agent},
    # {skill} are filled in (default: the Knative Service's cluster-local URL).
    if env.get("ROUSE_SKILL_URL"):
        settings = replace(settings, skill_url_template=env["ROUSE_SKILL_URL"])
    if env.get("ROUSE_JOIN_SWEEP_SECONDS"):  # how often joins past their deadline are ended
        settings = replace(settings, join_sweep_seconds=float(env["ROUSE_JOIN_SWEEP_SECONDS"]))
    if env.get("ROUSE_REPLAY_LEASE_SECONDS"):  # how soon a dead replayer's lease frees itself
        settings = replace(settings, replay_lease_seconds=float(env["ROUSE_REPLAY_LEASE_SECONDS"]))
    return settings


def main() -> None:
    token = os.environ.get(ENV_PARKING_TOKEN, "").strip()
    if not token:
        print(
            f"rouse parking: {ENV_PARKING_TOKEN} is not set: drop and replay require a credential"
            " (the chart generates one in a Secret)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("ROUSE_HOST", "0.0.0.0")  # a cluster Service reaches it on the pod IP
    settings = replace(settings_from_env(), token=token)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
