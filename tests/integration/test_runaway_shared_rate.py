"""Runaway detection's spend rate is exact across replicas on the shared counters (Redis): a
session whose spend is split over two gateways trips once, at its whole rate. On the local
backend each replica still measures its own settlements (unchanged). Fails on the code before:
the rate was kept per process, so neither replica saw more than its half."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluice.app import open_store
from sluice.sessions.runaway import Runaway
from sluice.settings import RunawayConfig
from sluice.storage.backends.redis_counters import RedisCounters
from sluice.storage.ports import SharedSpendRates, Store
from sluice.storage.records import VirtualKey
from tests.integration.test_redis_counters import REDIS_URL, _delete_prefix, _open_admin

DOLLAR = 10**12
RULE = RunawayConfig(id="rate", spend_rate_usd_per_hour=6, spend_rate_window="10m")  # $1 per 10 minutes
NOW = [1_000_000.0]  # the replicas' clock
KEY = VirtualKey(id="vk-1", name="vk-1", key_hash="h" * 64, key_hint="sk")


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[list[Store], list[RedisCounters]]]:
    """Two gateways' stores on one database and their counters on one Redis."""
    admin = await _open_admin()
    prefix = f"sluice-test:{uuid.uuid4().hex}:"
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stores = [open_store(url), open_store(url)]
    await stores[0].migrate()
    counters = [RedisCounters(REDIS_URL, prefix=prefix), RedisCounters(REDIS_URL, prefix=prefix)]
    try:
        yield stores, counters
    finally:
        for c in counters:
            await c.close()
        for s in stores:
            await s.close()
        await _delete_prefix(admin, prefix)
        await admin.aclose()


def _gateways(stores: list[Store], rates: list[SharedSpendRates | None], fired: list[str]) -> list[Runaway]:
    async def fire(alert_id: str, kind: str, severity: str, summary: str, **facts: Any) -> dict[str, Any]:
        fired.append(summary)
        return {}

    out = []
    for store, shared in zip(stores, rates, strict=True):
        runaway = Runaway([RULE], store, stops=None, audit=None, fire=fire, rates=shared)
        runaway.clock = lambda: NOW[0]
        out.append(runaway)
    return out


async def _split_spend(gateways: list[Runaway]) -> None:
    """$1.20 in 8 minutes, $0.30 at a time, alternating between the two gateways: $0.60 each."""
    for i in range(4):
        await gateways[i % 2].on_settled(KEY, "session-1", 3 * DOLLAR // 10, f"req-{i}")
        NOW[0] += 120


async def test_a_rate_split_across_two_replicas_trips_once(replicas: tuple[list[Store], list[RedisCounters]]) -> None:
    stores, counters = replicas
    fired: list[str] = []
    gateways = _gateways(stores, list(counters), fired)
    await _split_spend(gateways)
    assert len(fired) == 1 and "spent $1.2000 in 10m" in fired[0], fired
    for i in range(4, 8):  # still over the rate on both: claimed once, never again
        await gateways[i % 2].on_settled(KEY, "session-1", 3 * DOLLAR // 10, f"req-{i}")
    assert len(fired) == 1


async def test_on_the_local_backend_each_replica_measures_its_own(
    replicas: tuple[list[Store], list[RedisCounters]],
) -> None:
    stores, _ = replicas
    fired: list[str] = []
    await _split_spend(_gateways(stores, [None, None], fired))
    assert fired == []  # $0.60 each: under $1 per 10 minutes on either


async def test_the_shared_series_counts_a_request_once_lets_old_spend_go_and_is_exact(
    replicas: tuple[list[Store], list[RedisCounters]],
) -> None:
    _, (a, b) = replicas
    t = 5_000.0
    assert await a.add_spend("vk\0s", "r1", 7, t, [60, 600]) == [7, 7]
    assert await b.add_spend("vk\0s", "r1", 7, t + 1, [60, 600]) == [7, 7]  # the same request again
    assert await b.add_spend("vk\0s", "r2", 5, t + 30, [60, 600]) == [12, 12]
    assert await a.add_spend("vk\0s", "r3", 1, t + 61, [60, 600]) == [6, 13]  # r1 left the minute
    assert await a.add_spend("vk\0other", "r4", 1, t + 61, [60]) == [1]  # another session
    big = 2**62  # far beyond a double's 2^53: Lua never adds the amounts
    assert await a.add_spend("vk\0big", "r1", big, t, [60]) == [big]
    assert await b.add_spend("vk\0big", "r2", 1, t + 1, [60]) == [big + 1]
    assert await b.add_spend("vk\0big", "r3", 3, t + 100, [60]) == [3]


async def test_the_gateway_gives_runaway_the_shared_counters_on_redis(tmp_path: Path) -> None:
    from sluice.app import build_services
    from sluice.settings import parse_config

    config = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'g.db'}"},
            "governance": {"backend": "redis", "redis_url": REDIS_URL},
            "runaway": [RULE.model_dump(mode="json", exclude_none=True)],
        }
    )
    services = build_services(config)
    try:
        assert isinstance(services.engine.runaway._rates, RedisCounters)  # type: ignore[union-attr]
    finally:
        await services.limits.stop()
