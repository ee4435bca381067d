"""The Agent's Events: one per action naming every child it touched (one API write, not one
per child), split before kopf's 1024-character cut."""

from __future__ import annotations

from rouse_operator.handlers import EVENT_MESSAGE_LIMIT, change_messages, worth_an_event
from rouse_operator.reconcile import Change, Outcome


def test_one_event_per_action_names_every_child() -> None:
    changes = [
        Change("Created", "Service", "shop-triage", "it did not exist"),
        Change("Created", "Trigger", "shop-triage-0", "it did not exist"),
        Change("Deleted", "PingSource", "shop-old", "no longer in the Agent's spec"),
    ]
    assert change_messages(changes) == [
        (
            "Created",
            "Service shop-triage: it did not exist; Trigger shop-triage-0: it did not exist",
        ),
        ("Deleted", "PingSource shop-old: no longer in the Agent's spec"),
    ]


def test_long_lists_are_split_under_kopfs_limit() -> None:
    changes = [
        Change("Created", "Trigger", f"agent-skill-{i:03d}", "it did not exist") for i in range(60)
    ]
    events = change_messages(changes)
    assert len(events) > 1
    assert all(
        reason == "Created" and len(message) <= EVENT_MESSAGE_LIMIT for reason, message in events
    )
    named = "; ".join(message for _, message in events).split("; ")
    assert named == [f"Trigger agent-skill-{i:03d}: it did not exist" for i in range(60)]


def test_no_changes_no_events() -> None:
    assert change_messages([]) == []


def test_a_new_agents_children_are_no_event_later_ones_are() -> None:
    created = Change("Created", "Service", "shop-triage", "it did not exist")
    deleted = Change("Deleted", "Trigger", "shop-triage-1", "no longer in the Agent's spec")
    new = Outcome(agent={"metadata": {"name": "shop"}}, changes=[created, deleted])
    assert worth_an_event(new) == [deleted]
    seen = Outcome(agent={"status": {"observedGeneration": 1}}, changes=[created, deleted])
    assert worth_an_event(seen) == [created, deleted]
