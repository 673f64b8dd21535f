"""A full upstream pool is the gateway's own saturation, never a provider failure.

Before the fix, requests beyond the pool waited for a connection on the provider's first-byte
clock, timed out as PROVIDER_TIMEOUT, opened the provider's circuit breakers and got a healthy
provider refused for everyone ("circuit breaker is open")."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.contract.conftest import log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-saturation-00000000000"
STREAM = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 20,
    "stream": True,
    "messages": [{"role": "user", "content": "hold the line"}],
}


def config(upstream_url: str, pool_timeout_s: float) -> dict[str, Any]:
    return {
        "providers": {
            "anthropic": {
                "base_url": upstream_url,
                "keys": [{"name": "only-key", "value": "sk-a"}],
                # A first-byte timeout far shorter than a stream: waiting for a slot on this
                # clock (the old behaviour) fails every request beyond the pool.
                "first_byte_timeout_s": 0.5,
                "max_connections": 2,
                "pool_timeout_s": pool_timeout_s,
            }
        },
        "virtual_keys": [{"id": "vk-sat", "value": KEY, "provider_configs": [{"provider": "anthropic"}]}],
        # One provider failure would open the breaker, and there is nothing to fall back to: a
        # breaker opened by saturation shows as a 503 "circuit breaker is open" on the next call.
        "routing": {"retries": {"attempts": 1}, "circuit_breaker": {"failure_threshold": 1, "open_seconds": 60}},
    }


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


def stream_once(gateway: GatewayThread) -> tuple[int, dict[str, str], bytes]:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.request("POST", "/v1/messages", body=json.dumps(STREAM), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def metrics_of(gateway: GatewayThread) -> str:
    with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def run_concurrently(gateway: GatewayThread, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: stream_once(gateway), range(n)))


def test_requests_beyond_the_pool_wait_for_a_slot_off_the_providers_clock(
    upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory
) -> None:
    upstream.upstream.event_delay = 0.1  # each stream holds its connection for about a second
    with GatewayThread(config(upstream.base_url, pool_timeout_s=20), tmp_path_factory.mktemp("wait")) as gateway:
        results = run_concurrently(gateway, 5)
        assert [status for status, _, _ in results] == [200] * 5
        assert all(b"message_stop" in body for _, _, body in results)
        assert gateway.services.client.saturated == {}


def test_a_full_pool_answers_gateway_saturated_and_the_provider_stays_trusted(
    upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory
) -> None:
    upstream.upstream.event_delay = 0.15
    with GatewayThread(config(upstream.base_url, pool_timeout_s=0.2), tmp_path_factory.mktemp("full")) as gateway:
        results = run_concurrently(gateway, 5)
        statuses = sorted(status for status, _, _ in results)
        assert statuses.count(200) >= 2 and set(statuses) <= {200, 503}
        assert 503 in statuses  # 5 streams of about 1.2 s into 2 slots with a 0.2 s wait
        for status, headers, body in results:
            if status == 503:
                assert headers["retry-after"] == "1"
                assert b"at capacity" in body and b"circuit breaker" not in body
                entry = log_entry(gateway, headers["x-request-id"])
                assert [a["outcome"] for a in entry["attempts"]] == ["GATEWAY_SATURATED"]
        saturated = statuses.count(503)
        assert gateway.services.client.saturated == {("anthropic", "pool"): saturated}
        # The provider was never at fault: its breaker is closed, and the next caller is served.
        upstream.upstream.event_delay = 0.0
        status, _, body = stream_once(gateway)
        assert status == 200 and b"message_stop" in body
        metrics = metrics_of(gateway)
        assert f'sluice_gateway_saturated_total{{provider="anthropic",reason="pool"}} {saturated:.1f}' in metrics
        deadline = time.monotonic() + 5  # the last stream's slot is back once its response is released
        while 'sluice_upstream_connections_in_use{provider="anthropic"} 0.0' not in metrics:
            assert time.monotonic() < deadline, metrics
            time.sleep(0.05)
            metrics = metrics_of(gateway)
