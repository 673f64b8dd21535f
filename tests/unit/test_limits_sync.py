"""The synchronous path of Limits on in-process counters decides exactly as the awaited one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.app import open_store
from sluice.core.errors import ErrorKind, SluiceError
from sluice.governance.config_sync import sync_from_file
from sluice.governance.limits import Limits, NotNow
from sluice.settings import parse_config
from sluice.storage.backends.memory_counters import MemoryCounters
from sluice.storage.ports import Store
from tests.unit.test_limits import DOLLAR, FakeClock, vk

CONFIG = {
    "teams": [{"id": "t"}],
    "budgets": [{"id": "b", "virtual_key_id": "vk-1", "max_limit": 1.0, "reset_duration": "1d"}],
    "rate_limits": [{"id": "rl", "team_id": "t", "request_max_limit": 3, "request_reset_duration": "1h"}],
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'limits.db'}")
    await s.migrate()
    yield s
    await s.close()


async def limits_on(store: Store, clock: FakeClock) -> Limits:
    config = parse_config(CONFIG)
    await sync_from_file(store, config, "test")
    limits = Limits(config.governance, MemoryCounters(), store, clock=clock)
    await limits.reload()
    return limits


async def test_admit_now_waits_for_a_window_to_be_seeded_then_decides_as_admit(store: Store) -> None:
    clock = FakeClock(datetime(2026, 11, 2, 10, tzinfo=UTC))
    limits = await limits_on(store, clock)
    key = vk("vk-1", team="t")
    with pytest.raises(NotNow):  # its windows were never read from the ledger
        limits.admit_now("r0", key, DOLLAR // 2, 10)
    first = await limits.admit("r0", key, DOLLAR // 2, 10)
    limits.settle_now(first, limits.spend_row(first, "r0", key, DOLLAR // 2, 10, clock.now()))
    second = limits.admit_now("r1", key, DOLLAR // 2, 10)  # seeded now: no await
    assert second is not None
    limits.settle_now(second, limits.spend_row(second, "r1", key, DOLLAR // 2, 10, clock.now()))
    with pytest.raises(SluiceError) as spent:
        limits.admit_now("r2", key, 1, 10)
    assert spent.value.kind is ErrorKind.POLICY_BUDGET_EXCEEDED and spent.value.details["limit_id"] == "b"
    with pytest.raises(SluiceError) as same:
        await limits.admit("r2", key, 1, 10)
    assert same.value.message == spent.value.message
    # A released reservation counts nothing, not even a request.
    other = vk("vk-2", team="t")
    held = await limits.admit("r3", other, 0, 0)
    limits.release_now(held)
    assert limits.admit_now("r4", other, 0, 0) is not None
    with pytest.raises(SluiceError) as limited:  # r0, r1 and r4 used the team's 3 requests an hour
        limits.admit_now("r5", other, 0, 0)
    assert limited.value.kind is ErrorKind.POLICY_RATE_LIMITED
    clock.current += timedelta(hours=1)  # a new window: unseeded again
    with pytest.raises(NotNow):
        limits.admit_now("r6", other, 0, 0)
    await limits.stop()


async def test_admit_nows_memo_follows_a_reload_and_a_changed_key(store: Store) -> None:
    """admit_now keeps a key's buckets per window: a reloaded configuration and a key moved to
    another team must still apply from the next request on."""
    clock = FakeClock(datetime(2026, 11, 2, 10, tzinfo=UTC))
    limits = await limits_on(store, clock)
    key = vk("vk-1", team="t")
    await limits.admit("r0", key, 0, 0)  # seeds its windows
    assert limits.admit_now("r1", key, DOLLAR // 2, 10) is not None  # within the $1 budget
    doc = {**CONFIG, "budgets": [{"id": "b", "virtual_key_id": "vk-1", "max_limit": 0.25, "reset_duration": "1d"}]}
    await sync_from_file(store, parse_config(doc), "test")
    await limits.reload()
    await limits.admit("r2", vk("vk-9"), 0, 0)  # (another key: the reload's windows are seeded by `admit`)
    with pytest.raises((SluiceError, NotNow)):
        limits.admit_now("r3", key, DOLLAR // 2, 10)  # $0.50 no longer fits a $0.25 budget
    moved = vk("vk-7", team="t")
    assert await limits.admit("m0", moved, 0, 0) is not None  # r0, r1 and m0: the team's 3 requests an hour
    with pytest.raises(SluiceError):
        limits.admit_now("m1", moved, 0, 0)
    elsewhere = vk("vk-7", team=None)  # the same key, moved out of the team: a different object
    assert limits.admit_now("m4", elsewhere, 0, 0) is None  # no rule covers it now
    await limits.stop()
