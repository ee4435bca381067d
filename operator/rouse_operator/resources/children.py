"""Every child an Agent should have, in a stable order (Services, Triggers, PingSources)."""

from __future__ import annotations

from rouse_operator.resources import pingsource, service, trigger
from rouse_operator.resources.meta import Manifest
from rouse_operator.resources.policy import PolicyInputs, policy_inputs
from rouse_operator.settings import Settings


def desired(
    agent: Manifest,
    settings: Settings,
    policy: PolicyInputs | None = None,
    skip_schedules: frozenset[str] = frozenset(),
) -> list[Manifest]:
    """The manifests for `agent` (validated and defaulted, with metadata.namespace and uid).

    `skip_schedules` names skills whose schedule is invalid: their PingSource and its Trigger
    are left out (the reconciler reports why in a condition).
    """
    policy = policy or policy_inputs(agent)
    skills = agent["spec"]["skills"]
    services = [service.build(agent, s, settings) for s in skills]
    scheduled = [s for s in skills if s.get("schedule") and s["name"] not in skip_schedules]
    triggers = [
        trigger.build(agent, s, i, settings, policy.parked)
        for s in skills
        for i in range(len(s.get("events") or []))
    ] + [pingsource.build_trigger(agent, s, settings, policy.parked) for s in scheduled]
    pings = [pingsource.build(agent, s) for s in scheduled]
    return services + triggers + pings
