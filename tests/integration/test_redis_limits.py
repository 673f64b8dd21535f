"""Limits over the Redis backend, end to end through `Limits` (the engine's view), with two
gateway replicas admitting at once: a request limit and a concurrency limit stay exact, and a
settlement (ledger commit and Redis round trip in one flight) gives its slot back before it returns."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sluice.app import open_store
from sluice.core.errors import SluiceError
from sluice.governance.config_sync import sync_from_file
from sluice.governance.limits import Limits
from sluice.settings import parse_config
from sluice.storage.backends.redis_counters import RedisCounters
from sluice.storage.ports import Store
from sluice.storage.records import ProviderGrant, VirtualKey

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('SLUICE_TEST_REDIS_DB', '15')}"
KEY = VirtualKey("vk-r", "vk-r", "hvk-r", "h", (ProviderGrant("fake"),))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'limits.db'}")
    await s.migrate()
    yield s
    await s.close()


async def _replicas(store: Store, tmp_path: Path, prefix: str) -> list[Limits]:
    config: dict[str, Any] = {
        "virtual_keys": [{"id": "vk-r"}],
        "rate_limits": [
            {
                "id": "rl",
                "virtual_key_id": "vk-r",
                "request_max_limit": 30,
                "request_reset_duration": "1h",
                "max_concurrent_requests": 4,
            }
        ],
        "governance": {
            "backend": "redis",
            "redis_url": REDIS_URL,
            "busy_wait_s": 0,
            "spend_journal_path": str(tmp_path / "journal.jsonl"),
        },
    }
    cfg = parse_config(config)
    await sync_from_file(store, cfg, "test")
    replicas = []
    for _ in range(2):
        counters = RedisCounters(REDIS_URL, prefix=prefix)
        try:
            await counters._redis.call("PING")
        except Exception as exc:  # pragma: no cover - depends on the machine
            await counters.close()
            pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
        limits = Limits(cfg.governance, counters, store)
        await limits.start()
        replicas.append(limits)
    return replicas


async def test_request_and_concurrency_limits_are_exact_across_replicas(store: Store, tmp_path: Path) -> None:
    prefix = f"sluice-test:{uuid.uuid4().hex}:"
    replicas = await _replicas(store, tmp_path, prefix)
    in_flight, most = 0, 0
    admitted: list[str] = []

    async def one(i: int) -> None:
        nonlocal in_flight, most
        limits = replicas[i % 2]
        try:
            admission = await limits.admit(f"req-{i}", KEY, 0, 0)
        except SluiceError:
            return
        in_flight += 1
        most = max(most, in_flight)
        admitted.append(f"req-{i}")
        await asyncio.sleep(0.01)
        in_flight -= 1
        row = limits.spend_row(admission, f"req-{i}", KEY, 0, 0, datetime.now(UTC))
        await limits.settle(admission, row)

    try:
        for wave in range(12):  # waves of 12 concurrent admits: the slots come back with each settlement
            await asyncio.gather(*(one(wave * 100 + j) for j in range(12)))
        assert most == 4  # never more in flight than the concurrency limit, across both replicas
        assert len(admitted) == 30  # exactly the request limit, not one more
        spent = await store.spend_totals("virtual_key", "vk-r", datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
        assert spent[2] == 30  # every admitted request is in the ledger once
    finally:
        for limits in replicas:
            await limits.stop()
        import redis.asyncio as redis_async

        admin = redis_async.Redis.from_url(REDIS_URL)
        keys = [k async for k in admin.scan_iter(match=f"{prefix}*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()
