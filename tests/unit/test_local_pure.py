"""Local mode's pure parts: durations, delivery policy, routing, schedules, pools, log lines."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rouse_runtime.delivery import (
    DeliverySpec,
    backoff_seconds,
    dead_letter_attributes,
    delivery_spec,
    retryable,
    schedule_of_waits,
)
from rouse_runtime.local import routing
from rouse_runtime.local.chains import chain_id, new_traceparent
from rouse_runtime.local.durations import iso8601_seconds
from rouse_runtime.local.scheduler import Schedule, next_fire, ping_event, schedules
from rouse_runtime.local.supervisor import (
    PoolConfig,
    pool_config,
    process_env,
    readable_log_line,
    usage_from_metrics,
)
from rouse_runtime.policies.durations import go_duration_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1S", 1.0),
        ("PT0.5S", 0.5),
        ("PT2M", 120.0),
        ("PT1H1M1S", 3661.0),
        ("P1D", 86400.0),
        ("P1DT1S", 86401.0),
    ],
)
def test_iso8601_durations(text: str, seconds: float) -> None:
    assert iso8601_seconds(text) == seconds


@pytest.mark.parametrize("text", ["1s", "PT", "P", "PT1", "P1DT", "T1S", ""])
def test_bad_iso8601_durations_name_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="is not an ISO-8601 duration"):
        iso8601_seconds(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("0", 0.0), ("30s", 30.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("500ms", 0.5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10", "1x", "PT1S", "1s junk"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        go_duration_seconds(text)


def test_delivery_spec_reads_the_skill() -> None:
    skill = {
        "delivery": {
            "retries": 3,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.5S",
            "deadLetter": True,
        }
    }
    assert delivery_spec(skill) == DeliverySpec(
        retries=3, backoff_policy="linear", backoff_delay=0.5, dead_letter=True
    )
    assert delivery_spec({}) == DeliverySpec(
        retries=0, backoff_policy="exponential", backoff_delay=0.0
    )


def test_backoff_follows_knative() -> None:
    linear = DeliverySpec(retries=4, backoff_policy="linear", backoff_delay=1.0)
    exponential = DeliverySpec(retries=4, backoff_policy="exponential", backoff_delay=1.0)
    assert schedule_of_waits(linear) == [1.0, 2.0, 3.0, 4.0]
    assert schedule_of_waits(exponential) == [2.0, 4.0, 8.0, 16.0]
    with pytest.raises(ValueError, match="start at 1"):
        backoff_seconds(linear, 0)


def test_what_knative_retries() -> None:
    answers = [None, 200, 202, 400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503]
    assert [status for status in answers if retryable(status)] == [
        None,
        404,
        408,
        409,
        429,
        500,
        502,
        503,
    ]


AGENT = {
    "metadata": {"name": "shop"},
    "spec": {
        "env": [{"name": "A", "value": "1"}],
        "budget": {"perInvocation": {"maxSteps": 5}},
        "skills": [
            {
                "name": "a",
                "handler": "m:a",
                "events": [{"type": "t1"}, {"type": "t2", "source": "/s"}],
            },
            {"name": "b", "handler": "m:b", "events": [{"type": "t1"}]},
            {
                "name": "c",
                "handler": "m:c",
                "schedule": {"cron": "*/5 * * * *", "data": {"k": "v"}},
                "timeoutSeconds": 30,
            },
        ],
    },
}


def test_routes_are_one_per_filter() -> None:
    assert routing.routes(AGENT) == [
        routing.Route("a", (("type", "t1"),)),
        routing.Route("a", (("source", "/s"), ("type", "t2"))),
        routing.Route("b", (("type", "t1"),)),
    ]


@pytest.mark.parametrize(
    ("attributes", "skills"),
    [
        ({"type": "t1", "source": "/x"}, ["a", "b"]),
        ({"type": "t2", "source": "/s"}, ["a"]),
        ({"type": "t2", "source": "/other"}, []),
        ({"type": "T1"}, []),
        ({"type": "t3"}, []),
    ],
)
def test_exact_match_routing(attributes: dict[str, str], skills: list[str]) -> None:
    assert routing.targets(routing.routes(AGENT), attributes) == skills


def test_two_matching_filters_deliver_twice_like_two_triggers() -> None:
    agent = {"spec": {"skills": [{"name": "a", "events": [{"type": "t"}, {"source": "/s"}]}]}}
    assert routing.targets(routing.routes(agent), {"type": "t", "source": "/s"}) == ["a", "a"]


def test_schedules_are_pingsources() -> None:
    assert schedules(AGENT) == [
        Schedule(
            skill="c",
            cron="*/5 * * * *",
            timezone="UTC",
            data={"k": "v"},
            source="/apis/v1/namespaces/default/pingsources/shop-c-cron",
        )
    ]
    bad = {
        "metadata": {"name": "x"},
        "spec": {"skills": [{"name": "s", "schedule": {"cron": "every minute"}}]},
    }
    with pytest.raises(
        ValueError, match=re.escape("skill s: schedule.cron 'every minute' is not a valid cron")
    ):
        schedules(bad)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_next_fire_in_utc_and_with_seconds() -> None:
    every_five = Schedule("c", "*/5 * * * *", "UTC", {}, "/s")
    assert next_fire(every_five, _ts("2026-01-01T10:02:30")) == _ts("2026-01-01T10:05:00")
    assert next_fire(every_five, _ts("2026-01-01T10:05:00")) == _ts("2026-01-01T10:10:00")
    every_two_seconds = Schedule("c", "* * * * * */2", "UTC", {}, "/s")
    assert next_fire(every_two_seconds, _ts("2026-01-01T10:00:00.5")) == _ts("2026-01-01T10:00:02")
    berlin = Schedule("c", "0 8 * * *", "Europe/Berlin", {}, "/s")
    assert next_fire(berlin, _ts("2026-01-01T00:00:00")) == _ts("2026-01-01T07:00:00")


def test_ping_event_is_what_a_pingsource_sends() -> None:
    event = ping_event(
        Schedule("c", "* * * * *", "UTC", {"k": "v"}, "/apis/v1/namespaces/default/pingsources/x")
    )
    attributes = event.get_attributes()
    assert (
        attributes["type"],
        attributes["source"],
        attributes["datacontenttype"],
        event.data,
    ) == (
        "dev.knative.sources.ping",
        "/apis/v1/namespaces/default/pingsources/x",
        "application/json",
        {"k": "v"},
    )


def test_chain_ids_are_trace_ids() -> None:
    assert (
        chain_id("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        == "0af7651916cd43dd8448eb211c80319c"
    )
    assert chain_id("00-00000000000000000000000000000000-b7ad6b7169203331-01") is None
    assert chain_id("garbage") is None
    assert chain_id(None) is None
    assert chain_id(new_traceparent()) is not None


def test_pool_config_defaults_and_retention() -> None:
    assert pool_config(
        {"concurrency": 2, "scaling": {"min": 1, "max": 4, "retention": "5s"}}
    ) == PoolConfig(limit=2, min=1, max=4, idle_seconds=5.0)
    # concurrency 0 = unlimited: the autoscaler's target is the soft limit; retention 0s = local default
    assert pool_config(
        {"concurrency": 0, "scaling": {"target": 7, "retention": "0s"}}, 12.0
    ) == PoolConfig(limit=7, min=0, max=0, idle_seconds=12.0)


def test_process_env_is_the_runtime_contract() -> None:
    logged: list[str] = []
    spec = {
        **AGENT["spec"],
        "env": [{"name": "A", "value": "1"}, {"name": "KEY", "valueFrom": {"secretKeyRef": {}}}],
    }
    agent = {**AGENT, "spec": spec}
    env = process_env(
        agent,
        spec["skills"][2],
        broker_url="http://127.0.0.1:9/",
        state_url="sqlite:///tmp/s.db",
        port=4242,
        agent_dir=Path("/agents/shop"),
        base={"PATH": "/bin", "PYTHONPATH": "/lib"},
        log=logged.append,
    )
    assert env == {
        "PATH": "/bin",
        "A": "1",
        "ROUSE_HANDLER": "m:c",
        "ROUSE_AGENT": "shop",
        "ROUSE_SKILL": "c",
        "ROUSE_REPLY_TYPE": "dev.rouse.c.completed",
        "ROUSE_BROKER_URL": "http://127.0.0.1:9/",
        "ROUSE_MAX_STEPS": "5",
        "ROUSE_TIMEOUT_SECONDS": "30",
        "PORT": "4242",
        "ROUSE_HOST": "127.0.0.1",
        "ROUSE_STATE_URL": "sqlite:///tmp/s.db",
        "ROUSE_NAMESPACE": "default",
        "PYTHONPATH": "/agents/shop:/lib",
        "PYTHONUNBUFFERED": "1",
    }
    assert logged == [
        "env KEY uses valueFrom, which local mode cannot resolve: export it before rouse dev"
    ]


def test_runtime_log_lines_are_shortened() -> None:
    line = '{"time": "t", "level": "info", "logger": "rouse.runtime", "msg": "ready", "agent": "a", "skill": "s", "handler": "m:f"}'
    assert readable_log_line(line) == "info ready handler=m:f"
    assert (
        readable_log_line('{"level": "info", "logger": "uvicorn.error", "msg": "Started"}') is None
    )
    assert readable_log_line("plain text") == "plain text"


def test_usage_from_metrics_sums_tokens_and_cost() -> None:
    text = (
        'rouse_tokens_total{agent="a",skill="s",model="m",kind="input"} 10.0\n'
        'rouse_tokens_total{agent="a",skill="s",model="m",kind="output"} 5.0\n'
        'rouse_cost_usd_total{agent="a",skill="s",model="m"} 0.25\n'
    )
    assert usage_from_metrics(text) == {"tokens": 15.0, "costUSD": 0.25}


def test_dead_letter_attributes_are_knatives() -> None:
    """What Knative's dispatcher adds to an event it sends to a dead-letter sink."""
    attrs = dead_letter_attributes("http://10.0.0.7:8080/", 500, "HTTP 500: boom")
    assert attrs == {
        "knativeerrordest": "http://10.0.0.7:8080/",
        "knativeerrorcode": "500",
        "knativeerrordata": base64.b64encode(b"HTTP 500: boom").decode(),
    }
    assert dead_letter_attributes("skill s", None, "") == {"knativeerrordest": "skill s"}
    long = dead_letter_attributes("d", 502, "x" * 5000)
    assert len(base64.b64decode(long["knativeerrordata"])) == 1024  # Knative's limit
