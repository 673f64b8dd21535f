"""An alert survives a crash between its claim and its audit record: the claim stays pending with
its time, and once it is older than a check could take, the next check raising the same alert
(after a restart, or in another replica) takes the claim over and records it, once. A process
that is alive but cannot reach the audit log renews its claim, so nobody takes it from it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sluice.alerts.monitor import AlertMonitor, claim_key
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.settings import AlertsConfig, parse_config
from sluice.storage.backends.sql import normalise_url
from sluice.storage.ports import Store
from tests.unit.test_session_ledger_migration import PG, alembic

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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_claims_from_before_0019_move_to_their_table(backend: str, tmp_path: Path) -> None:
    """Migration 0019 copies the claims kept in `sluice_meta` to `alert_claim`: a recorded one (or
    one made before claims had states: positive) stays quiet, a pending one left by a dead process
    is taken over by the next check raising it; going down puts them back, as they are now."""
    admin = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        db = "sluice_test_" + uuid.uuid4().hex[:8]
        admin = await asyncpg.connect(PG + "/postgres")
        await admin.execute(f'CREATE DATABASE "{db}"')
        url = f"{PG}/{db}"
    clock = Clock()
    pending_id = "spend_rate:runaway:vk-ci:491843"
    old_ms = int((clock.at - timedelta(minutes=5)).timestamp() * 1000)
    rows = {
        "alert:" + claim_key(ALERT[0]): 1234567890123456789,  # recorded (a token from before states)
        "alert:" + claim_key(pending_id): -((old_ms << 12) | 5),  # pending: its process died
        "runaway:0123": 42,  # not an alert's: stays
    }
    try:
        await asyncio.to_thread(alembic, url, "0018")
        engine = create_async_engine(normalise_url(url))
        async with engine.begin() as conn:
            for name, value in rows.items():
                await conn.execute(
                    text("INSERT INTO sluice_meta (name, value) VALUES (:n, :v)"), {"n": name, "v": value}
                )
        await asyncio.to_thread(alembic, url, "head")
        store = open_store(url)
        try:
            fresh = monitor(store, clock)
            assert await fresh.fire(*ALERT) is None
            fired = await fresh.fire(pending_id, "spend_rate", "warning", "spent $9 in the last hour")
            assert fired is not None and fired["alert_id"] == pending_id
            assert await monitor(store, clock).fire(pending_id, "spend_rate", "warning", "again") is None
            assert await alerts(store) == [pending_id]
        finally:
            await store.close()
        async with engine.connect() as conn:
            meta = dict((await conn.execute(text("SELECT name, value FROM sluice_meta"))).all())
        assert meta == rows  # left for the previous version's replicas, during a rolling update
        await asyncio.to_thread(alembic, url, "0018", True)
        async with engine.connect() as conn:
            meta = dict((await conn.execute(text("SELECT name, value FROM sluice_meta"))).all())
        assert meta == {**rows, "alert:" + claim_key(ALERT[0]): 1, "alert:" + claim_key(pending_id): 1}
        await engine.dispose()
    finally:
        if admin is not None:
            await admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            await admin.close()


async def test_two_recorders_at_once_record_a_pending_alert_once(store: Store) -> None:
    """The checks, the takeover loop and `fire` (from requests) record pending claims: two of them
    at once must not both record the same one."""
    clock = Clock()
    alive = monitor(store, clock)
    real = alive._audit.append

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise OSError("audit store unreachable")

    alive._audit.append = down  # type: ignore[method-assign]
    assert await alive.fire(*ALERT) is None  # pending in the process
    gate, calls = asyncio.Event(), []

    async def slow(kind: str, actor: str, data: dict[str, Any]) -> Any:
        calls.append(data["alert_id"])
        await gate.wait()
        return await real(kind, actor, data)

    alive._audit.append = slow  # type: ignore[method-assign]
    both = asyncio.gather(alive.check(), alive.check())
    for _ in range(100):  # let both run as far as they can without the audit log
        await asyncio.sleep(0)
    gate.set()
    await both
    assert calls == [ALERT[0]]
    assert await alerts(store) == [ALERT[0]]
