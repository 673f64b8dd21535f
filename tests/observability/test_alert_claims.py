"""An alert survives a crash between its claim and its audit record: the claim stays pending with
its time, and once it is older than a check could take, the next check raising the same alert
(after a restart, or in another replica) takes the claim over and records it, once. A process
that is alive but cannot reach the audit log renews its claim, so nobody takes it from it."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from sluice.alerts.monitor import AlertMonitor
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.settings import AlertsConfig, parse_config
from sluice.storage.ports import Store

AUDIT = parse_config({"audit": {"hmac_key": "claims-test-audit-key-0123456789"}}).audit
ALERT = ("budget_threshold:team-a-daily:1764633600:80", "budget_threshold", "warning", "80% spent")


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 2, 12, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


class Crash(BaseException):
    """The process dies here (not an error any code catches)."""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'claims.db'}")
    await st.migrate()
    yield st
    await st.close()


def monitor(store: Store, clock: Clock) -> AlertMonitor:
    """A gateway process's monitor (a restart or another replica is another one on the same store)."""
    return AlertMonitor(
        AlertsConfig(provider_health=False),
        AuditLog(AUDIT, store),
        store,
        cast(Any, None),
        cast(Any, None),
        clock=clock,
    )


async def alerts(store: Store) -> list[str]:
    return [r.data["alert_id"] async for r in store.audit_records() if r.kind == "alert"]


async def test_a_crash_after_the_claim_loses_nothing(store: Store) -> None:
    clock = Clock()
    dying = monitor(store, clock)

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise Crash

    dying._audit.append = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await dying.fire(*ALERT)
    assert await alerts(store) == []  # claimed, never recorded
    restarted = monitor(store, clock)
    clock.at += timedelta(seconds=10)  # maybe the claimer is still recording it: wait
    assert await restarted.fire(*ALERT) is None
    clock.at += timedelta(seconds=55)  # longer than any check takes: its process is gone
    fired = await restarted.fire(*ALERT)
    assert fired is not None and fired["alert_id"] == ALERT[0]
    assert await alerts(store) == [ALERT[0]]
    for later in (restarted, monitor(store, clock)):  # recorded now: quiet everywhere
        clock.at += timedelta(hours=1)
        assert await later.fire(*ALERT) is None
    assert await alerts(store) == [ALERT[0]]


async def test_a_live_process_that_cannot_record_keeps_its_claim(store: Store) -> None:
    clock = Clock()
    alive = monitor(store, clock)
    real = alive._audit.append

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise OSError("audit store unreachable")

    alive._audit.append = down  # type: ignore[method-assign]
    assert await alive.fire(*ALERT) is None  # claimed, pending in the process
    for _ in range(4):  # the store stays down for a few minutes; each check renews the claim
        clock.at += timedelta(seconds=50)
        assert await alive.check() == []
    other = monitor(store, clock)
    clock.at += timedelta(seconds=5)
    assert await other.fire(*ALERT) is None  # not orphaned: left to its process
    alive._audit.append = real  # type: ignore[method-assign]
    assert [a["alert_id"] for a in await alive.check()] == [ALERT[0]]
    assert await alerts(store) == [ALERT[0]]
    clock.at += timedelta(minutes=5)
    assert await other.fire(*ALERT) is None
    assert await alerts(store) == [ALERT[0]]


async def test_two_processes_racing_for_a_fresh_alert_record_it_once(store: Store) -> None:
    clock = Clock()
    first, second = monitor(store, clock), monitor(store, clock)
    results = [await first.fire(*ALERT), await second.fire(*ALERT)]
    assert [r is not None for r in results] == [True, False]
    assert await alerts(store) == [ALERT[0]]


async def test_claims_from_before_claims_had_states_stay_quiet(store: Store) -> None:
    clock = Clock()
    fresh = monitor(store, clock)
    name = "alert:" + hashlib.sha256(ALERT[0].encode()).hexdigest()[:40]
    await store.first_seen(name, 1234567890123456789)  # an old claim: a random positive token
    clock.at += timedelta(days=1)
    assert await fresh.fire(*ALERT) is None
    assert await alerts(store) == []
