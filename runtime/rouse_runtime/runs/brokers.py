"""Which Broker a skill's events go to, told to the platform side through the run's records.

A compensation and the reply of a join ended at its deadline are sent by the
platform (the parking service), not by the skill; they belong in the Agent's
Broker (`spec.broker`), which only the skill knows, from the ROUSE_BROKER_URL
the operator set: `<ingress>/<namespace>/<broker>`. The skill records the name;
the platform builds the URL from its own ingress and the record's namespace, so
a record never sends the platform anywhere else.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_BROKER = "default"


def broker_name(broker_url: str | None, namespace: str) -> str | None:
    """The Broker's name in a cluster skill's ROUSE_BROKER_URL; None for any other URL
    (local mode's single broker)."""
    if not broker_url:
        return None
    path = urlsplit(broker_url).path.strip("/").split("/")
    if len(path) == 2 and path[0] == namespace and DNS_LABEL.match(path[1]):
        return path[1]
    return None


def recorded_broker(value: object) -> str:
    """The Broker a record names, if it is a valid name; else the namespace's default."""
    if isinstance(value, str) and DNS_LABEL.match(value):
        return value
    return DEFAULT_BROKER
