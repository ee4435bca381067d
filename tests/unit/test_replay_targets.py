"""Where the operator replays parked events: each skill's restored subscriber, only once Ready."""

from __future__ import annotations

from typing import Any

from rouse_operator.replay_targets import replay_targets
from rouse_operator.resources.meta import PINGSOURCE, TRIGGER

PARKING = "http://rouse-parking.rouse-system.svc.cluster.local"


def agent() -> dict[str, Any]:
    return {
        "metadata": {"name": "shop", "namespace": "ns"},
        "spec": {
            "skills": [
                {
                    "name": "work",
                    "events": [{"type": "a"}, {"type": "b"}],
                    "delivery": {"retries": 3, "backoffDelay": "PT1S", "deadLetter": True},
                },
                {"name": "digest", "schedule": {"cron": "0 * * * *"}},
            ]
        },
    }


def knative(generation: int, ready: str, field: str, address: str) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": ready}],
            field: address,
        },
    }


SVC = "http://shop-work.ns.svc.cluster.local"
DIGEST = "http://shop-digest.ns.svc.cluster.local"


def children(work_a: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {
        TRIGGER: {
            "shop-work-0": work_a,
            "shop-work-1": knative(2, "True", "subscriberUri", SVC),
        },
        PINGSOURCE: {"shop-digest-cron": knative(1, "True", "sinkUri", DIGEST)},
    }


def test_every_skill_at_its_restored_subscriber_with_its_delivery() -> None:
    targets, why = replay_targets(
        agent(), children(knative(2, "True", "subscriberUri", SVC)), PARKING
    )
    assert (targets, why) == (
        {
            "work": {"url": SVC, "delivery": {"retries": 3, "backoffDelay": "PT1S"}},
            "digest": {"url": DIGEST, "delivery": {}},
        },
        "",
    )


def test_waits_while_a_trigger_still_parks_or_is_not_ready() -> None:
    parked = knative(2, "True", "subscriberUri", f"{PARKING}/park/ns/shop/work")
    assert replay_targets(agent(), children(parked), PARKING) == (
        None,
        "Trigger shop-work-0 still delivers to the parking service",
    )
    stale = knative(2, "True", "subscriberUri", SVC)
    stale["metadata"]["generation"] = 3  # the restored spec not observed yet
    targets, why = replay_targets(agent(), children(stale), PARKING)
    assert targets is None and "not Ready yet" in why
    assert (
        replay_targets(agent(), children(knative(2, "False", "subscriberUri", SVC)), PARKING)[0]
        is None
    )
