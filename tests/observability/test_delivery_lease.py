"""One process delivers to each sink at a time: two runners sharing one store (two replicas, each
with its own connections to the same SQLite file or PostgreSQL database) deliver every alert and
every audit batch once, a replica that dies is taken over when its lease lapses (at once when it
stops cleanly), and one that lost its lease cannot move the sink's position."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiohttp import web

from sluice.alerts.delivery import AlertRunner
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.audit.outbox import ExportRunner, build_exporter
from sluice.settings import AlertSinkConfig, AuditExportConfig, AuditExporterConfig, parse_config
from sluice.storage.ports import Store
from sluice.upstream.client import UpstreamClient

PG = "postgresql://postgres@127.0.0.1:5432"
AUDIT = parse_config({"audit": {"hmac_key": "lease-test-audit-key-0123456789"}}).audit
EXPORT = AuditExportConfig(backoff_max_s=0.01, lease_s=30)
ALERTS = 6


class Sink:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(0.01)  # long enough for the other replica to poll meanwhile
        self.received.append(body)
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
    yield s, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two replicas have."""
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        name = "sluice_test_" + uuid.uuid4().hex[:8]
        admin = await asyncpg.connect(PG + "/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG}/{name}"
    first, second = open_store(url), open_store(url)
    try:
        await first.migrate()
        log = AuditLog(AUDIT, first)
        for n in range(ALERTS):
            await log.append("request", "vk", {"n": n})  # not alerts: passed over
            await log.append(
                "alert",
                "sluice:alerts",
                {
                    "alert_id": f"a{n}",
                    "type": "spend_rate",
                    "severity": "warning",
                    "summary": f"#{n}",
                    "fired_at": "2026-01-01T00:00:00+00:00",
                },
            )
        yield first, second
    finally:
        await first.close()
        await second.close()
        if admin is not None:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient()
    yield c
    await c.close()


def alert_runner(store: Store, url: str, client: UpstreamClient) -> AlertRunner:
    sink = AlertSinkConfig(name="hook", type="webhook", url=url + "/hook", secret="whsec_bGVhc2UtdGVzdA==")
    return AlertRunner(sink, store, client, EXPORT)


async def race(runners: list[ExportRunner], until: Callable[[], bool]) -> None:
    """Both replicas poll at the same moments, as their loops do, until `until`."""
    for _ in range(200):
        if until():
            return
        await asyncio.gather(*(r.deliver_once() for r in runners))
    raise AssertionError("not delivered")


async def test_two_replicas_send_each_alert_once(
    stores: tuple[Store, Store], sink: tuple[Sink, str], client: UpstreamClient
) -> None:
    s, url = sink
    a, b = alert_runner(stores[0], url, client), alert_runner(stores[1], url, client)
    await race([a, b], lambda: len(s.received) >= ALERTS)
    for _ in range(5):  # more polls: nothing is sent again
        await asyncio.gather(a.deliver_once(), b.deliver_once())
    ids = [orjson.loads(body)["data"]["alert_id"] for body in s.received]
    assert ids == [f"a{n}" for n in range(ALERTS)]  # each once, in order
    assert sorted([a.delivered, b.delivered]) == [0, ALERTS]  # one replica held the lease


async def test_a_dead_replica_is_taken_over_when_its_lease_lapses(
    stores: tuple[Store, Store], sink: tuple[Sink, str], client: UpstreamClient
) -> None:
    s, url = sink
    a, b = alert_runner(stores[0], url, client), alert_runner(stores[1], url, client)
    assert await a.deliver_once() == 1 and a.leased  # a passes over one record and sends the first alert
    assert await b.deliver_once() == 0 and not b.leased
    # a dies without a word; b tries again once a's lease has lapsed (its clock 31 s on)
    now = b.now_ms
    b.now_ms = lambda: now() + 31_000
    await race([b], lambda: len(s.received) >= ALERTS)
    assert b.leased and b.delivered == ALERTS - 1
    # a wakes up (a long pause, not a death): it has lost the lease and moves nothing
    a.now_ms = b.now_ms
    assert await a.deliver_once() == 0 and not a.leased
    assert await stores[0].set_export_position("alert:hook", 0, 0, a.holder) is False
    ids = [orjson.loads(body)["data"]["alert_id"] for body in s.received]
    assert ids == [f"a{n}" for n in range(ALERTS)]


async def test_a_replica_that_stops_hands_over_at_once(
    stores: tuple[Store, Store], sink: tuple[Sink, str], client: UpstreamClient
) -> None:
    s, url = sink
    a, b = alert_runner(stores[0], url, client), alert_runner(stores[1], url, client)
    assert await a.deliver_once() == 1
    await a.stop()  # releases the lease
    await race([b], lambda: len(s.received) >= ALERTS)
    assert b.delivered == ALERTS - 1


async def test_audit_exporters_share_the_lease(
    stores: tuple[Store, Store], sink: tuple[Sink, str], client: UpstreamClient
) -> None:
    s, url = sink
    cfg = AuditExporterConfig(name="siem", type="webhook", url=url + "/siem", batch_size=4, secret="s")
    runners = [ExportRunner(build_exporter(cfg), 4, store, client, EXPORT) for store in stores]
    await race(runners, lambda: sum(len(orjson.loads(b)) for b in s.received) >= 2 * ALERTS)
    for _ in range(5):
        await asyncio.gather(*(r.deliver_once() for r in runners))
    seqs = [record["seq"] for body in s.received for record in orjson.loads(body)]
    assert seqs == list(range(1, 2 * ALERTS + 1))  # every record once, in order
    assert sorted(r.delivered for r in runners) == [0, 2 * ALERTS]


async def test_an_alert_recorded_twice_is_sent_once(
    stores: tuple[Store, Store], sink: tuple[Sink, str], client: UpstreamClient
) -> None:
    # Its first recorder died before marking the claim recorded; the takeover recorded it again.
    again = {"alert_id": "a2", "type": "spend_rate", "severity": "warning", "summary": "#2", "fired_at": "x"}
    await AuditLog(AUDIT, stores[0]).append("alert", "sluice:alerts", again)
    s, url = sink
    runner = alert_runner(stores[0], url, client)
    for _ in range(3 * ALERTS):
        await runner.deliver_once()
    ids = [orjson.loads(body)["data"]["alert_id"] for body in s.received]
    assert ids == [f"a{n}" for n in range(ALERTS)]
    assert await runner.backlog() == 0
