"""An alert raised only once (a guardrail's, a runaway session's, a provider's) survives a crash
between its claim and its audit record: the claim keeps the alert, and the takeover loop of any
process (at start, then every check interval) raises it again once the claim is older than the
lease, exactly once across replicas (compare-and-set on the claim), and the sink gets it once.
Claims done with are pruned after the retention, and never while their window runs (SQLite and
PostgreSQL, two replicas each with its own connections to one database)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import orjson
import pytest
from aiohttp import web
from sqlalchemy import func, select

from sluice.alerts.delivery import AlertRunner
from sluice.alerts.monitor import AlertMonitor
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.settings import AlertsConfig, AlertSinkConfig, AuditExportConfig, parse_config
from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_tables import alert_claim
from sluice.storage.ports import Store
from sluice.upstream.client import UpstreamClient

PG = "postgresql://postgres@127.0.0.1:5432"
AUDIT = parse_config({"audit": {"hmac_key": "takeover-test-audit-key-0123456789"}}).audit
EXPORT = AuditExportConfig(backoff_max_s=0.01, lease_s=30)
GUARDRAIL = (
    "guardrail:req-7f3a:no-secrets",
    "guardrail",
    "warning",
    "Guardrail rule 'no-secrets' matched 1 time(s) (request)",
)
FACTS = {"rule": "no-secrets", "hmac": "3f" * 16, "length": 40}


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 2, 12, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


class Crash(BaseException):
    """The process dies here (not an error any code catches)."""


async def crash(*args: Any, **kwargs: Any) -> Any:
    raise Crash


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Three stores on one database: three processes (a dying one, its restart, another replica)."""
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'takeover.db'}"
    else:
        name = "sluice_test_" + uuid.uuid4().hex[:8]
        admin = await asyncpg.connect(PG + "/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG}/{name}"
    opened = [open_store(url) for _ in range(3)]
    try:
        await opened[0].migrate()
        yield opened
    finally:
        for store in opened:
            await store.close()
        if admin is not None:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()


def monitor(store: Store, clock: Clock, **config: Any) -> AlertMonitor:
    return AlertMonitor(
        AlertsConfig(provider_health=False, **config),
        AuditLog(AUDIT, store),
        store,
        cast(Any, None),
        cast(Any, None),
        clock=clock,
    )


async def recorded(store: Store) -> list[str]:
    return [r.data["alert_id"] async for r in store.audit_records() if r.kind == "alert"]


async def claims(store: Store) -> int:
    async with cast(SqlStore, store).engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(alert_claim))).scalar_one())


async def dying_fire(store: Store, clock: Clock) -> None:
    """A process raises the guardrail alert and dies between the claim and the audit record."""
    dying = monitor(store, clock)
    dying._audit.append = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await dying.fire(*GUARDRAIL, **FACTS)
    assert GUARDRAIL[0] not in await recorded(store)


class Sink:
    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(orjson.loads(await request.read())["data"]["alert_id"])
        return web.json_response({"ok": True})


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, str]]:
    s = Sink()
    app = web.Application()
    app.router.add_post("/{tail:.*}", s.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield s, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    await runner.cleanup()


async def deliver_all(store: Store, url: str) -> None:
    """A restarted process's sink runner, run until it has nothing left to send."""
    client = UpstreamClient()
    sink = AlertSinkConfig(name="hook", type="webhook", url=url, secret="whsec_dGFrZW92ZXItdGVzdA==")
    runner = AlertRunner(sink, store, client, EXPORT)
    try:
        while await runner.deliver_once():
            pass
    finally:
        await runner.stop()
        await client.close()


async def test_a_one_shot_alert_lost_in_a_crash_is_raised_and_delivered_once_after_restart(
    stores: list[Store], sink: tuple[Sink, str]
) -> None:
    clock = Clock()
    await dying_fire(stores[0], clock)
    restarted = monitor(stores[1], clock)  # nobody raises a guardrail alert again: only the takeover can
    clock.at += timedelta(seconds=30)  # maybe its claimer is still recording it: left alone
    assert await restarted.take_over_stale() == []
    clock.at += timedelta(seconds=31)  # older than the lease (60 s): its process is gone
    taken = await restarted.take_over_stale()
    assert [a["alert_id"] for a in taken] == [GUARDRAIL[0]]
    assert taken[0]["hmac"] == FACTS["hmac"] and taken[0]["summary"] == GUARDRAIL[3]  # the alert as claimed
    assert await recorded(stores[0]) == [GUARDRAIL[0]]
    s, url = sink
    await deliver_all(stores[1], url)
    assert s.received == [GUARDRAIL[0]]
    again = monitor(stores[2], clock)  # a second restart, much later: nothing raised or sent again
    clock.at += timedelta(hours=2)
    assert await again.take_over_stale() == []
    assert await again.fire(*GUARDRAIL, **FACTS) is None
    await deliver_all(stores[2], url)
    assert s.received == [GUARDRAIL[0]]
    assert await recorded(stores[0]) == [GUARDRAIL[0]]


async def test_two_replicas_take_a_stale_claim_over_once(stores: list[Store]) -> None:
    clock = Clock()
    await dying_fire(stores[0], clock)
    clock.at += timedelta(minutes=2)
    replicas = [monitor(stores[1], clock), monitor(stores[2], clock)]
    results = await asyncio.gather(*(r.take_over_stale() for r in replicas))
    assert sorted(len(r) for r in results) == [0, 1]
    results = await asyncio.gather(*(r.take_over_stale() for r in replicas))  # and not again
    assert results == [[], []]
    assert await recorded(stores[0]) == [GUARDRAIL[0]]


async def test_the_takeover_loop_raises_it_once_started(stores: list[Store]) -> None:
    clock = Clock()
    await dying_fire(stores[0], clock)
    clock.at += timedelta(minutes=2)
    restarted = monitor(stores[1], clock, interval_s=0.05)
    restarted.start()
    try:
        for _ in range(400):
            if await recorded(stores[0]):
                break
            await asyncio.sleep(0.05)
        for _ in range(5):  # a few more turns of the loop: nothing again
            await asyncio.sleep(0.05)
    finally:
        await restarted.stop()
    assert await recorded(stores[0]) == [GUARDRAIL[0]]


async def test_dying_after_the_record_before_the_mark_records_it_once(stores: list[Store]) -> None:
    clock = Clock()
    dying = monitor(stores[0], clock)
    dying._mark = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await dying.fire(*GUARDRAIL, **FACTS)
    assert await recorded(stores[0]) == [GUARDRAIL[0]]  # recorded, its claim still pending
    clock.at += timedelta(minutes=2)
    restarted = monitor(stores[1], clock)
    assert await restarted.take_over_stale() == []  # found in the audit log: not recorded again
    assert await recorded(stores[0]) == [GUARDRAIL[0]]
    clock.at += timedelta(minutes=2)
    assert await monitor(stores[2], clock).take_over_stale() == []  # and marked recorded now
    assert await recorded(stores[0]) == [GUARDRAIL[0]]


async def test_claims_are_pruned_after_the_retention_and_their_window(stores: list[Store]) -> None:
    clock = Clock()
    first = monitor(stores[0], clock, claim_retention_days=7)
    provider = ("provider_unhealthy:anthropic/primary:1796212800:9c1e", "provider_unhealthy", "critical", "open")
    assert await first.fire(*provider) is not None  # raised once: kept 7 days
    budget = ("budget_threshold:team-a-monthly:1764547200:80", "budget_threshold", "warning", "80%")
    window_end = datetime(2026, 12, 31, tzinfo=UTC)  # raised again by every check until then
    assert await first.fire(*budget, repeat_until=window_end) is not None
    await dying_fire(stores[1], clock)  # a pending claim with its alert: never pruned
    assert await claims(stores[0]) == 3
    clock.at += timedelta(days=6)
    assert await first.prune() == 0
    clock.at += timedelta(days=2)  # past the retention
    assert await first.prune() == 1  # the provider's; the budget's window runs; the pending one waits
    assert await claims(stores[0]) == 2
    later = monitor(stores[2], clock)  # the budget alert stays claimed: a restart does not repeat it
    assert await later.fire(*budget, repeat_until=window_end) is None
    clock.at = window_end + timedelta(days=8)
    assert [a["alert_id"] for a in await later.take_over_stale()] == [GUARDRAIL[0]]
    assert await later.prune() == 1  # the budget's (its window is over); the guardrail's was recorded just now
    clock.at += timedelta(days=8)
    assert await later.prune() == 1
    assert await claims(stores[0]) == 0
    assert await recorded(stores[0]) == [provider[0], budget[0], GUARDRAIL[0]]
