"""The Prometheus client against a real Prometheus server (Debian package) on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from rouse_runtime.prometheus import (
    PrometheusBadResponseError,
    PrometheusClient,
    PrometheusError,
    PrometheusNoDataError,
    PrometheusUnavailableError,
    Sample,
)
from rouse_testing.prometheus import PrometheusServer, prometheus_server
from rouse_testing.wait import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    with prometheus_server(scrape_interval=0.5) as server:
        target = f"127.0.0.1:{server.port}"
        server.set_targets([target])  # Prometheus scrapes its own /metrics
        server.wait_scraped(target)
        yield server


async def test_instant_query_returns_labelled_samples(prometheus: PrometheusServer) -> None:
    target = f"127.0.0.1:{prometheus.port}"
    async with PrometheusClient(prometheus.url) as client:
        samples = await client.query(f'up{{job="rouse",instance="{target}"}}')
        assert samples == [Sample({"__name__": "up", "instance": target, "job": "rouse"}, 1.0)]
        assert await client.value("sum(up)") == 1.0
        assert await client.value("1 + 2") == 3.0  # scalar result


async def test_no_data_is_its_own_error(prometheus: PrometheusServer) -> None:
    async with PrometheusClient(prometheus.url) as client:
        assert await client.query('up{job="nothing"}') == []
        with pytest.raises(PrometheusNoDataError, match="matched no series"):
            await client.value('up{job="nothing"}')


async def test_bad_query_and_wrong_endpoint_are_bad_responses(prometheus: PrometheusServer) -> None:
    async with PrometheusClient(prometheus.url) as client:
        with pytest.raises(PrometheusBadResponseError, match=r"HTTP 400.*parse error"):
            await client.query("sum(")
        with pytest.raises(PrometheusBadResponseError, match="not an instant vector"):
            await client.query("up[1m]")
        with pytest.raises(PrometheusBadResponseError, match="returned 2 series"):
            await client.value('label_replace(up, "x", "a", "", "") or vector(5)')
    async with PrometheusClient(prometheus.url + "/not-prometheus") as client:
        with pytest.raises(PrometheusBadResponseError, match="HTTP 404"):
            await client.query("up")


async def test_refused_connection_is_unavailable() -> None:
    async with PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(PrometheusUnavailableError, match=r"unreachable.*ConnectError"):
            await client.query("up")


async def test_silent_server_times_out_as_unavailable() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        async with PrometheusClient(f"http://127.0.0.1:{port}", timeout=0.5) as client:
            with pytest.raises(PrometheusUnavailableError, match="ReadTimeout") as info:
                await client.query("up")
    assert isinstance(info.value, PrometheusError)
    assert info.value.reason == "PrometheusUnavailable"
