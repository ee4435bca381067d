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
BROKER = "http://broker-ingress.knative-eventing.svc.cluster.local/ns/default"


def children(work_a: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {
        TRIGGER: {
            "shop-work-0": work_a,
            "shop-work-1": knative(2, "True", "subscriberUri", SVC),
            "shop-digest-cron": knative(1, "True", "subscriberUri", DIGEST),  # its ticks
        },
        # the PingSource sinks into the broker: not where its ticks are replayed
        PINGSOURCE: {"shop-digest-cron": knative(1, "True", "sinkUri", BROKER)},
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


def test_waits_while_the_schedule_trigger_still_parks() -> None:
    found = children(knative(2, "True", "subscriberUri", SVC))
    found[TRIGGER]["shop-digest-cron"] = knative(
        1, "True", "subscriberUri", f"{PARKING}/park/ns/shop/digest"
    )
    assert replay_targets(agent(), found, PARKING) == (
        None,
        "Trigger shop-digest-cron still delivers to the parking service",
    )


def test_a_schedule_left_out_has_no_trigger_to_wait_for() -> None:
    found = children(knative(2, "True", "subscriberUri", SVC))
    del found[TRIGGER]["shop-digest-cron"]  # InvalidSchedule: neither PingSource nor Trigger
    targets, why = replay_targets(agent(), found, PARKING)
    assert why == "" and targets is not None and set(targets) == {"work"}
