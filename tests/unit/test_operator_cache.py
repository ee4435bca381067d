"""ChildCache: the reconciler's watch-fed view of its children."""

from __future__ import annotations

from typing import Any

from rouse_operator.cache import ChildCache
from rouse_operator.resources.meta import PINGSOURCE, SERVICE, TRIGGER


def obj(name: str, rv: str, agent: str = "bot", ns: str = "ns", **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                     "labels": {"rouse.dev/agent": agent}, "managedFields": [{"manager": "rouse"}]},
        "spec": spec,
    }  # fmt: skip


def slim(o: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in o["metadata"].items() if k != "managedFields"}
    return {**o, "metadata": meta}


def test_prime_put_drop_and_ordering() -> None:
    cache = ChildCache()
    assert not cache.primed("ns")
    cache.prime(
        "ns", {SERVICE: [obj("bot-a", "5"), obj("other-a", "6", agent="other")], TRIGGER: []}
    )
    assert cache.primed("ns") and not cache.primed("elsewhere")
    assert cache.children("ns", "bot") == {
        SERVICE: {"bot-a": slim(obj("bot-a", "5"))},
        TRIGGER: {},
        PINGSOURCE: {},
    }
    cache.put(SERVICE, obj("bot-a", "7", image="new"))
    cache.put(SERVICE, obj("bot-a", "6", image="late event"))  # older than what is cached: ignored
    assert cache.children("ns", "bot")[SERVICE]["bot-a"]["spec"] == {"image": "new"}
    cache.drop(SERVICE, "ns", "bot", "bot-a")
    assert cache.children("ns", "bot")[SERVICE] == {}
    assert list(cache.children("ns", "other")[SERVICE]) == ["other-a"]
    cache.put(SERVICE, {"metadata": {"name": "unlabelled", "namespace": "ns"}})  # not ours: ignored
    assert cache.children("ns", "")[SERVICE] == {}


def test_prime_replaces_and_expire_forces_a_new_listing() -> None:
    cache = ChildCache()
    cache.prime("ns", {SERVICE: [obj("bot-a", "5"), obj("bot-b", "5")]})
    cache.expire()
    assert not cache.primed("ns")
    cache.prime("ns", {SERVICE: [obj("bot-a", "9")]})  # bot-b went away while an event was missed
    assert list(cache.children("ns", "bot")[SERVICE]) == ["bot-a"]
    children = cache.children("ns", "bot")
    children[SERVICE].clear()  # a copy: the cache is not changed through it
    assert list(cache.children("ns", "bot")[SERVICE]) == ["bot-a"]


def test_agent_of_names_the_agent_holding_a_child_name() -> None:
    cache = ChildCache()
    cache.prime("ns", {SERVICE: [obj("a-b-c", "5", agent="a-b")], TRIGGER: []})
    assert cache.agent_of(SERVICE, "ns", "a-b-c") == "a-b"
    assert cache.agent_of(TRIGGER, "ns", "a-b-c") is None
    assert cache.agent_of(SERVICE, "elsewhere", "a-b-c") is None
    cache.drop(SERVICE, "ns", "a-b", "a-b-c")
    assert cache.agent_of(SERVICE, "ns", "a-b-c") is None


def test_a_deleted_agent_leaves_no_entries_behind() -> None:
    """Per-Agent entries go with the Agent: its children dropped one by one (the garbage
    collector's path) or all at once (forget_agent, on the Agent's DELETED event)."""
    cache = ChildCache()
    cache.prime("ns", {SERVICE: [obj("bot-a", "5"), obj("other-a", "5", agent="other")]})
    cache.put(TRIGGER, obj("bot-a-0", "6"))
    assert cache.agents() == 2
    cache.drop(SERVICE, "ns", "bot", "bot-a")
    assert cache.agents() == 2  # bot still has its Trigger
    cache.drop(TRIGGER, "ns", "bot", "bot-a-0")
    assert cache.agents() == 1 and cache._objects == {
        "ns": {"other": {SERVICE: {"other-a": slim(obj("other-a", "5", agent="other"))}}}
    }
    cache.drop(TRIGGER, "ns", "never-seen", "x")  # a late event of nothing cached: no entry made
    cache.forget_agent("ns", "other")
    assert cache.agents() == 0 and cache._objects == {}
    assert cache.primed("ns") and cache.children("ns", "other")[SERVICE] == {}
    cache.forget_agent("ns", "other")  # twice (DELETED and a late child event): harmless


def test_agent_of_follows_puts_drops_primes_and_forgets() -> None:
    """The owner index agrees with the cached children through every change."""
    cache = ChildCache()
    cache.put(SERVICE, obj("x-s", "1", agent="x"))
    cache.put(SERVICE, obj("y-s", "1", agent="y"))
    assert (cache.agent_of(SERVICE, "ns", "x-s"), cache.agent_of(SERVICE, "ns", "y-s")) == (
        "x",
        "y",
    )
    cache.drop(SERVICE, "ns", "x", "x-s")
    assert cache.agent_of(SERVICE, "ns", "x-s") is None
    cache.forget_agent("ns", "y")
    assert cache.agent_of(SERVICE, "ns", "y-s") is None
    cache.put(SERVICE, obj("y-s", "1", agent="y"))
    cache.prime(
        "ns", {SERVICE: [obj("z-s", "1", agent="z")]}
    )  # a fresh listing replaces the namespace
    assert cache.agent_of(SERVICE, "ns", "y-s") is None
    assert cache.agent_of(SERVICE, "ns", "z-s") == "z"
