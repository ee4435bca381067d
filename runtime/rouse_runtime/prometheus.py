"""A small Prometheus HTTP API client: instant queries with timeouts and clear errors.

The policies must tell "no figure" from "zero": every failure is a
`PrometheusError` subclass naming the server and the query, so a caller can
hold its last decision and say why in a condition instead of acting on a gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

DEFAULT_TIMEOUT_SECONDS = 5.0


class PrometheusError(RuntimeError):
    """A query gave no usable answer; `reason` is a short CamelCase word for conditions.

    `summary` is what a condition may say (no URL, no query); the message has the detail.
    """

    reason = "PrometheusError"
    summary = "Prometheus gave no usable answer"


class PrometheusUnavailableError(PrometheusError):
    """The server did not answer (refused, DNS, timeout)."""

    reason = "PrometheusUnavailable"
    summary = "Prometheus is unreachable"


class PrometheusBadResponseError(PrometheusError):
    """The server answered, but not with a successful query result."""

    reason = "PrometheusBadResponse"
    summary = "Prometheus answered with an error"


class PrometheusNoDataError(PrometheusError):
    """The query succeeded and matched no series."""

    reason = "PrometheusNoData"
    summary = "Prometheus has no ledger series for this agent yet"


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: dict[str, str]
    value: float


def _sample(labels: dict[str, str], pair: Any) -> Sample:
    _, raw = pair
    return Sample(labels=labels, value=float(raw))


def parse_result(data: Any) -> list[Sample]:
    """Samples of an instant query's `data` object; ValueError when it is not one."""
    kind, result = data["resultType"], data["result"]
    if kind == "vector":
        return [_sample(dict(item["metric"]), item["value"]) for item in result]
    if kind == "scalar":
        return [_sample({}, result)]
    raise ValueError(f"resultType {kind!r} is not an instant vector or scalar")


class PrometheusClient:
    """Instant queries against one Prometheus server (`/api/v1/query`)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        self._owns_client = client is None

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def query(self, promql: str, *, at: datetime | None = None) -> list[Sample]:
        """The samples of an instant query (possibly none), evaluated now or `at`."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        where = f"Prometheus at {self.base_url}"
        try:
            response = await self._client.get(f"{self.base_url}/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailableError(
                f"{where} unreachable for query {promql!r}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error") if isinstance(body, dict) else response.text[:200]
            raise PrometheusBadResponseError(
                f"{where} answered HTTP {response.status_code} to query {promql!r}: {detail}"
            )
        try:
            return parse_result(body["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PrometheusBadResponseError(
                f"{where} sent a malformed result for query {promql!r}: {exc!r}"
            ) from exc

    async def value(self, promql: str, *, at: datetime | None = None) -> float:
        """The single number a query returns; PrometheusNoDataError when it matches nothing."""
        samples = [s for s in await self.query(promql, at=at) if not math.isnan(s.value)]
        if not samples:
            raise PrometheusNoDataError(f"query {promql!r} on {self.base_url} matched no series")
        if len(samples) > 1:
            raise PrometheusBadResponseError(
                f"query {promql!r} on {self.base_url} returned {len(samples)} series, expected one"
            )
        return samples[0].value
