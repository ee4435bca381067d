"""The operator's settings, read once from its environment (the Helm chart sets them).

The names and defaults are the contract between the chart, the reconciler and the
policies; see README "The operator".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rouse_runtime.redact import redact

DEFAULT_BROKER_INGRESS = "http://broker-ingress.knative-eventing.svc.cluster.local"
DEFAULT_PARKING_URL = "http://rouse-parking.rouse-system.svc.cluster.local"
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"


# A Secret's name (DNS-1123 subdomain) and a key in its data.
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))  # a URL given in a variable may hold a password


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret in the Agent's namespace; the operator names it and never reads it."""

    name: str
    key: str


@dataclass(frozen=True)
class Settings:
    """Where the broker, parking service, state store and Prometheus are; timer periods."""

    broker_ingress: str = DEFAULT_BROKER_INGRESS
    parking_url: str = DEFAULT_PARKING_URL
    state_url: str = ""
    # When set, skills read ROUSE_STATE_URL from this Secret (secretKeyRef), never a plain value.
    state_url_secret: SecretRef | None = None
    # The parking service's token for replay (ROUSE_PARKING_TOKEN, from a Secret by reference).
    parking_token: str | None = field(default=None, repr=False)
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    eval_interval: float = 60.0
    metrics_port: int = 8080
    resync_interval: float = 300.0
    warm_pool_min_dwell: float = 300.0  # seconds a min-scale stays at least

    def state_url_has_password(self) -> bool:
        """The state URL carries a password and the builders copy it as a plain env value into
        every skill's Knative Service (readable by whoever can read Services there): only
        when no ROUSE_STATE_URL_SECRET sends skills to a Secret instead."""
        if self.state_url_secret is not None or not self.state_url:
            return False
        return urlsplit(self.state_url).password is not None

    def broker_url(self, namespace: str, broker: str) -> str:
        """Where a skill sends events (ROUSE_BROKER_URL): the broker's ingress path."""
        return f"{self.broker_ingress.rstrip('/')}/{namespace}/{broker}"

    def dead_letter_url(self, namespace: str, agent: str, skill: str) -> str:
        """Dead-letter sink of a skill's Triggers."""
        return f"{self.parking_url.rstrip('/')}/dead-letter/{namespace}/{agent}/{skill}"

    def parking_sink_url(self, namespace: str, agent: str, skill: str) -> str:
        """Where a skill's Triggers point while its agent's budget is spent (onExhausted: park)."""
        return f"{self.parking_url.rstrip('/')}/park/{namespace}/{agent}/{skill}"


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={value!r}: expected an http:// or https:// URL")
    return value.rstrip("/")


def _secret_ref(env: Mapping[str, str], name: str) -> SecretRef | None:
    """`<secret>:<key>` from `env[name]`; None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    secret, sep, key = raw.partition(":")
    if not sep or not _SECRET_NAME.match(secret) or len(secret) > 253 or not _SECRET_KEY.match(key):
        raise SettingsError(
            f"{name}={raw!r}: expected <secret>:<key>, a Secret name (DNS-1123 subdomain) "
            "and a key of its data"
        )
    return SecretRef(name=secret, key=key)


def seconds(
    env: Mapping[str, str],
    name: str,
    default: float,
    error: type[SettingsError] = SettingsError,
) -> float:
    """A positive number of seconds from `env[name]` (default when unset); `error` names it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise error(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise error(f"{name}={raw!r}: must be greater than 0")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise SettingsError(f"{name}={raw!r}: expected a TCP port (0-65535, 0 = any free port)")
    return int(raw)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ROUSE_* variables (os.environ by default); SettingsError names a bad one."""
    env = os.environ if env is None else env
    return Settings(
        broker_ingress=_url(env, "ROUSE_BROKER_INGRESS", DEFAULT_BROKER_INGRESS),
        parking_url=_url(env, "ROUSE_PARKING_URL", DEFAULT_PARKING_URL),
        state_url=env.get("ROUSE_STATE_URL", "").strip(),
        state_url_secret=_secret_ref(env, "ROUSE_STATE_URL_SECRET"),
        parking_token=env.get("ROUSE_PARKING_TOKEN", "").strip() or None,
        prometheus_url=_url(env, "ROUSE_PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL),
        eval_interval=seconds(env, "ROUSE_EVAL_INTERVAL", 60.0),
        metrics_port=_port(env, "ROUSE_METRICS_PORT", 8080),
        resync_interval=seconds(env, "ROUSE_RESYNC_INTERVAL", 300.0),
        warm_pool_min_dwell=seconds(env, "ROUSE_WARM_POOL_MIN_DWELL", 300.0),
    )
