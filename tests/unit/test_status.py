"""status.compute: the Agent's status from its children's own conditions (whole objects)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from rouse_operator import checks, reconcile
from rouse_operator.resources import children
from rouse_operator.resources.meta import PINGSOURCE, SERVICE, TRIGGER, ChildKind
from rouse_operator.settings import SecretRef, Settings, SettingsError, from_env
from rouse_operator.status import READY, TRIGGERS_READY, Problem, changed, compute, new_problems
from rouse_runtime import agentspec
from rouse_testing.agents import base_agent

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
Obj = dict[str, Any]


def agent(generation: int = 3) -> Obj:
    obj = agentspec.validate_agent(base_agent())
    obj["metadata"].update(namespace="team-a", uid="u-1", generation=generation)
    return obj


def live(manifests: list[Obj], ready: dict[str, str] | None = None) -> dict[ChildKind, list[Obj]]:
    """Children as the API returns them; `ready` sets each named child's Ready status."""
    ready = ready or {}
    out: dict[ChildKind, list[Obj]] = {SERVICE: [], TRIGGER: [], PINGSOURCE: []}
    for manifest in manifests:
        obj = copy.deepcopy(manifest)
        name = obj["metadata"]["name"]
        obj["metadata"]["generation"] = 1
        if name in ready:
            cond: Obj = {"type": "Ready", "status": ready[name]}
            if ready[name] == "False":
                cond.update(reason="RevisionFailed", message="image pull backoff")
            obj["status"] = {"observedGeneration": 1, "conditions": [cond]}
            if obj["kind"] == "Service":
                obj["status"]["url"] = f"http://{name}.team-a.example.com"
        kind = {"Service": SERVICE, "Trigger": TRIGGER, "PingSource": PINGSOURCE}[obj["kind"]]
        out[kind].append(obj)
    return out


# names of the children; the schedule's PingSource and its Trigger share triage-bot-digest-cron
ALL = ["triage-bot-triage", "triage-bot-digest", "triage-bot-triage-0", "triage-bot-digest-cron"]


def test_all_children_ready() -> None:
    a = agent()
    kids = live(children.desired(a, Settings()), dict.fromkeys(ALL, "True"))
    assert compute(a, kids, now=T0) == {
        "observedGeneration": 3,
        "phase": "Ready",
        "skillsReady": "2/2",
        "warm": 0,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready",
             "message": "all skills and triggers are ready",
             "lastTransitionTime": T0, "observedGeneration": 3},
            {"type": "SkillsReady", "status": "True", "reason": "Ready", "message": "2 ready",
             "lastTransitionTime": T0, "observedGeneration": 3},
            {"type": "TriggersReady", "status": "True", "reason": "Ready", "message": "3 ready",
             "lastTransitionTime": T0, "observedGeneration": 3},
        ],
        "skills": [
            {"name": "triage", "service": "triage-bot-triage", "ready": True, "minScale": 0,
             "url": "http://triage-bot-triage.team-a.example.com"},
            {"name": "digest", "service": "triage-bot-digest", "ready": True, "minScale": 0,
             "url": "http://triage-bot-digest.team-a.example.com"},
        ],
    }  # fmt: skip


def test_nothing_reported_yet_is_pending() -> None:
    a = agent()
    status = compute(a, live(children.desired(a, Settings())), now=T0)
    assert status["phase"] == "Pending"
    assert status["skillsReady"] == "0/2"
    assert status["conditions"][1] == {
        "type": "SkillsReady", "status": "Unknown", "reason": "Deploying",
        "message": "Service triage-bot-triage: generation 1 not observed yet (and 1 more)",
        "lastTransitionTime": T0, "observedGeneration": 3,
    }  # fmt: skip
    assert status["skills"][0] == {
        "name": "triage", "service": "triage-bot-triage", "ready": False, "minScale": 0,
        "message": "Service triage-bot-triage: generation 1 not observed yet",
    }  # fmt: skip


def test_failed_service_degrades_and_names_it() -> None:
    a = agent()
    ready = dict.fromkeys(ALL, "True") | {"triage-bot-digest": "False"}
    status = compute(a, live(children.desired(a, Settings()), ready), now=T0)
    assert status["phase"] == "Degraded"
    assert status["skillsReady"] == "1/2"
    assert status["conditions"][0] == {
        "type": "Ready", "status": "False", "reason": "RevisionFailed",
        "message": "Service triage-bot-digest: image pull backoff",
        "lastTransitionTime": T0, "observedGeneration": 3,
    }  # fmt: skip


def test_stale_generation_is_not_ready() -> None:
    a = agent()
    kids = live(children.desired(a, Settings()), dict.fromkeys(ALL, "True"))
    kids[SERVICE][0]["metadata"]["generation"] = 2  # spec changed, Knative has not caught up
    status = compute(a, kids, now=T0)
    assert status["phase"] == "Pending"
    assert (
        status["skills"][0]["message"] == "Service triage-bot-triage: generation 2 not observed yet"
    )


def test_missing_child_and_problems() -> None:
    a = agent()
    kids = live(children.desired(a, Settings()), dict.fromkeys(ALL, "True"))
    kids[TRIGGER] = []
    status = compute(a, kids, now=T0)
    assert status["conditions"][2]["status"] == "Unknown"
    # the event filter's Trigger and the schedule's (the PingSource ticks into the broker)
    assert status["conditions"][2]["message"] == (
        "Trigger triage-bot-triage-0 does not exist yet (and 1 more)"
    )
    broker = Problem(
        TRIGGERS_READY, "BrokerNotFound", "spec.broker: Broker 'default' does not exist"
    )
    status = compute(a, kids, [broker], now=T0)
    assert status["phase"] == "Degraded"
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "False", "BrokerNotFound"),
        ("SkillsReady", "True", "Ready"),
        ("TriggersReady", "False", "BrokerNotFound"),
    ]


def test_transition_time_kept_while_status_holds() -> None:
    a = agent()
    kids = live(children.desired(a, Settings()), dict.fromkeys(ALL, "True"))
    first = compute(a, kids, now=T0)
    a["status"] = first
    assert compute(a, kids, now=T1) == first  # nothing changed: an identical status, no write
    kids[SERVICE][0]["status"]["conditions"][0]["status"] = "False"
    second = compute(a, kids, now=T1)
    assert [c["lastTransitionTime"] for c in second["conditions"]] == [T1, T1, T0]


def test_budget_spent_is_suspended_and_warm_counts_min_scale() -> None:
    a = agent()
    a["status"] = {
        "budget": {"exhausted": False},
        "warmPool": {"skills": [{"name": "triage", "minScale": 2}]},
    }
    kids = live(children.desired(a, Settings()), dict.fromkeys(ALL, "True"))
    # The floor is on the Revisions (floor.py), not the template: until the reconciler has
    # put it there, status says the template's min-scale.
    before = compute(a, kids, now=T0)
    assert (before["warm"], before["skills"][0]["minScale"]) == (0, 0)
    status = compute(a, kids, now=T0, floors={"triage-bot-triage": 2})
    assert (status["phase"], status["warm"], status["skills"][0]["minScale"]) == ("Ready", 2, 2)
    a["status"]["budget"]["exhausted"] = True
    assert compute(a, kids, now=T0)["phase"] == "Suspended"


def test_bad_cron_becomes_a_problem_and_the_pingsource_is_left_out() -> None:
    a = agent()
    a["spec"]["skills"][1]["schedule"]["cron"] = "61 * * * *"
    a["spec"]["warmPool"]["schedules"] = [{"cron": "* * * *", "duration": "1h", "min": 1}]
    problems, unscheduled = checks.schedule_problems(a)
    assert problems == [
        Problem(TRIGGERS_READY, "InvalidSchedule",
                "spec.skills[digest].schedule.cron: '61 * * * *' is not a valid cron expression",
                "digest"),
        Problem(READY, "InvalidSchedule",
                "spec.warmPool.schedules[0].cron: '* * * *' has 4 fields, expected 5 "
                "(minute hour day month weekday)"),
    ]  # fmt: skip
    assert unscheduled == frozenset({"digest"})
    kids = live(
        children.desired(a, Settings(), skip_schedules=unscheduled), dict.fromkeys(ALL, "True")
    )
    status = compute(a, kids, problems, now=T0)
    assert status["phase"] == "Degraded"
    assert status["conditions"][0]["reason"] == "InvalidSchedule"
    assert status["conditions"][2]["message"].startswith("spec.skills[digest].schedule.cron")


@pytest.mark.parametrize("cron", ["*/5 * * * *", "0 8 * * 1-5", "@hourly", "0 0 1 1 *"])
def test_good_crons(cron: str) -> None:
    assert checks.cron_error(cron) is None


def test_contains_allows_knative_defaults_but_not_edits() -> None:
    wanted = {"containers": [{"name": "skill", "image": "a", "env": [{"name": "X", "value": "1"}]}]}
    defaulted = {"containers": [{"name": "skill", "image": "a", "resources": {},
                                 "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}  # fmt: skip
    assert reconcile.contains(defaulted, wanted)
    edited = copy.deepcopy(defaulted)
    edited["containers"][0]["image"] = "b"
    assert not reconcile.contains(edited, wanted)
    assert not reconcile.contains({"a": [1, 2]}, {"a": [1]})


def test_settings_from_env() -> None:
    assert from_env({}) == Settings()
    settings = from_env({
        "ROUSE_BROKER_INGRESS": "http://ingress.example/", "ROUSE_PARKING_URL": "https://park.example",
        "ROUSE_STATE_URL": "redis://r:6379/0", "ROUSE_EVAL_INTERVAL": "30", "ROUSE_METRICS_PORT": "9102",
        "ROUSE_WARM_POOL_MIN_DWELL": "1.5",
    })  # fmt: skip
    assert settings == Settings(
        broker_ingress="http://ingress.example", parking_url="https://park.example",
        state_url="redis://r:6379/0", eval_interval=30.0, metrics_port=9102,
        warm_pool_min_dwell=1.5,
    )  # fmt: skip
    assert settings.broker_url("ns", "default") == "http://ingress.example/ns/default"
    assert settings.dead_letter_url("ns", "a", "s") == "https://park.example/dead-letter/ns/a/s"
    assert settings.parking_sink_url("ns", "a", "s") == "https://park.example/park/ns/a/s"
    with pytest.raises(SettingsError, match="ROUSE_METRICS_PORT='x'"):
        from_env({"ROUSE_METRICS_PORT": "x"})
    with pytest.raises(SettingsError, match="ROUSE_PARKING_URL='parking'"):
        from_env({"ROUSE_PARKING_URL": "parking"})
    assert not settings.state_url_has_password() and not Settings().state_url_has_password()
    assert Settings(state_url="redis://:s3cret@r:6379/0").state_url_has_password()
    by_secret = from_env({
        "ROUSE_STATE_URL": "redis://:s3cret@r:6379/0", "ROUSE_STATE_URL_SECRET": "rouse-state:url",
    })  # fmt: skip
    assert by_secret.state_url_secret == SecretRef(name="rouse-state", key="url")
    assert not by_secret.state_url_has_password()  # skills get a secretKeyRef, not the URL
    for bad in ("rouse-state", "Rouse:url", "rouse-state:", "a:b/c"):
        with pytest.raises(SettingsError, match=f"ROUSE_STATE_URL_SECRET='{bad}'"):
            from_env({"ROUSE_STATE_URL_SECRET": bad})
    with pytest.raises(SettingsError, match="ROUSE_WARM_POOL_MIN_DWELL='5m'"):
        from_env({"ROUSE_WARM_POOL_MIN_DWELL": "5m"})


def test_only_problems_not_reported_before_are_new() -> None:
    """Two problems on one condition: the second (not the condition's reason) is not new on
    every reconcile (it used to be, and posted a Warning Event each time)."""
    a = agent()
    a["spec"]["skills"][1]["schedule"]["cron"] = "61 * * * *"
    broker = Problem(TRIGGERS_READY, "BrokerNotFound", "spec.broker: Broker 'x' does not exist")
    schedule, _ = checks.schedule_problems(a)
    problems = [broker, *schedule]
    assert new_problems(problems, []) == problems
    kids = live(children.desired(a, Settings()), dict.fromkeys(ALL, "True"))
    reported = compute(a, kids, problems, now=T0)["conditions"]
    assert new_problems(problems, reported) == []
    gone_and_back = compute(a, kids, [broker], now=T0)["conditions"]
    assert new_problems(problems, gone_and_back) == schedule


def test_why_a_child_is_applied() -> None:
    wanted = reconcile.with_hash(children.desired(agent(), Settings())[0])
    assert reconcile.why_applied(None, wanted) == "it did not exist"
    edited = copy.deepcopy(wanted)
    edited["spec"]["template"]["spec"]["containerConcurrency"] = 99
    assert not reconcile.up_to_date(edited, wanted)
    assert reconcile.why_applied(edited, wanted) == (
        "fields Rouse sets were changed by someone else; put back"
    )
    older = copy.deepcopy(wanted)
    older["metadata"]["annotations"][reconcile.HASH_ANNOTATION] = "0" * 16
    assert reconcile.why_applied(older, wanted) == (
        "its desired state changed (the Agent's spec, a policy decision or the operator)"
    )
    assert reconcile.up_to_date(copy.deepcopy(wanted), wanted)


def test_only_the_controller_may_delete_a_child() -> None:
    child = children.desired(agent(), Settings())[0]
    assert reconcile.controlled_by(child, "u-1")
    assert not reconcile.controlled_by(child, "u-2")  # an earlier Agent of the same name
    assert not reconcile.controlled_by(child, None)
    child["metadata"]["ownerReferences"][0]["controller"] = False
    assert not reconcile.controlled_by(child, "u-1")
    del child["metadata"]["ownerReferences"]
    assert not reconcile.controlled_by(child, "u-1")  # labelled by hand, never ours


def test_a_deleted_child_is_forgotten() -> None:
    from kubernetes import client
    from rouse_operator.kube import Kube

    applied = {"metadata": {"namespace": "team-a", "name": "bot-triage", "resourceVersion": "7"}}

    class Applies(Kube):
        def apply(self, kind: Any, manifest: Any, force: bool) -> Any:
            return applied

    reconciler = reconcile.Reconciler(
        Applies(client.CustomObjectsApi(client.ApiClient())), Settings()
    )
    reconciler._apply(SERVICE, applied, "bot", force=False)
    assert reconciler.ours("Service", "team-a", "bot-triage", "7")
    reconciler.forget("Service", "team-a", "bot-triage")
    assert not reconciler.ours("Service", "team-a", "bot-triage", "7")
    assert reconciler.written == {}


def test_the_policies_conditions_are_no_change_of_ours() -> None:
    """A settled Agent's status is not rewritten on every reconcile because the policy
    loop's conditions sit in the same list (it used to be)."""
    a = agent()
    kids = live(children.desired(a, Settings()), dict.fromkeys(ALL, "True"))
    ours = compute(a, kids, now=T0)
    policy = {"type": "WithinBudget", "status": "True", "reason": "NoDailyBudget",
              "message": "no daily limits", "lastTransitionTime": T0, "observedGeneration": 3}  # fmt: skip
    stored = {**ours, "conditions": [*ours["conditions"], policy], "budget": {"used": "0%"}}
    a["status"] = stored
    again = compute(a, kids, now=T1)
    assert not changed(stored, again)
    kids[SERVICE][0]["status"]["conditions"][0]["status"] = "False"
    assert changed(stored, compute(a, kids, now=T1))
    assert changed({**stored, "phase": "Pending"}, again)


def test_an_over_long_condition_message_is_cut_to_the_crd_bound() -> None:
    from rouse_operator.conditions import MAX_MESSAGE, condition

    cut = condition("Ready", "False", "Deploying", "x" * (MAX_MESSAGE + 10))
    assert len(cut["message"]) == MAX_MESSAGE and cut["message"].endswith("...")
    assert condition("Ready", "True", "Ready", "ok")["message"] == "ok"
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "agent.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    message = status["properties"]["conditions"]["items"]["properties"]["message"]
    assert message["maxLength"] == MAX_MESSAGE


def test_failed_service_names_the_cause_its_ready_condition_omits() -> None:
    """Knative's Service Ready says "no ready Revision"; the cause is in ConfigurationsReady."""
    from rouse_operator.status import readiness

    no_revision = 'Configuration "a-greet" does not have any ready Revision.'
    ksvc: Obj = {
        "kind": "Service",
        "metadata": {"name": "a-greet", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "ConfigurationsReady", "status": "False", "reason": "RevisionFailed",
                    "message": 'Revision "a-greet-00001" failed with message: Container failed with: '
                    "module 'hello.skills' has no attribute 'nope'.",
                },
                {"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": no_revision},
                {"type": "RoutesReady", "status": "False", "reason": "RevisionMissing", "message": no_revision},
            ],
        },
    }  # fmt: skip
    got = readiness(ksvc, "Service a-greet")
    assert got.status == "False" and got.reason == "RevisionMissing"
    assert got.message == (
        f"Service a-greet: {no_revision} "
        'Revision "a-greet-00001" failed with message: Container failed with: '
        "module 'hello.skills' has no attribute 'nope'."
    )


def test_a_childs_long_message_is_one_short_line_in_the_condition() -> None:
    """Knative's messages (a container's last words) stay whole in status.skills, not in conditions."""
    from rouse_operator.conditions import SHORT_MESSAGE, summarize

    words = "Traceback (most recent call last):\n  File app.py\nValueError: bad\n"
    assert summarize([words]) == "Traceback (most recent call last): ... ValueError: bad"
    long_line = "Service a: " + "y" * 400
    assert (
        summarize([long_line, "Service b: z"])
        == long_line[: SHORT_MESSAGE - 3] + "... (and 1 more)"
    )
    assert summarize(["Service a: ok"]) == "Service a: ok"
