"""The same SQL store over the real PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from sluice.app import open_store
from sluice.governance.keys import hash_secret
from sluice.storage.ports import Store
from sluice.storage.records import ProviderGrant, RequestLogEntry, RequestQuery, VirtualKey

PG = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
async def pg_store() -> AsyncIterator[Store]:
    name = "sluice_test_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    store = open_store(f"{PG}/{name}")
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_keys_and_request_log_on_postgres(pg_store: Store) -> None:
    key = VirtualKey(
        "vk-pg", "PG", hash_secret("pg-secret"), "pg-…", (ProviderGrant("anthropic", 0.5, ("m",)),), team_id="t"
    )
    await pg_store.create_key(key)
    v1 = await pg_store.keys_version()
    found = await pg_store.key_by_hash(hash_secret("pg-secret"))
    assert found is not None and found.grants == key.grants and found.team_id == "t"
    assert await pg_store.revoke_key("vk-pg", datetime.now(UTC))
    assert await pg_store.keys_version() > v1
    revoked = await pg_store.key_by_id("vk-pg")
    assert revoked is not None and revoked.revoked_at is not None and revoked.revoked_at.tzinfo is not None
    # Seeding from config again keeps the revocation.
    await pg_store.seed_config_key(key, replace_secret=True)
    again = await pg_store.key_by_id("vk-pg")
    assert again is not None and again.revoked_at is not None

    entry = RequestLogEntry(
        request_id="req_pg",
        ts=datetime.now(UTC),
        path="/v1/messages",
        surface="anthropic_messages",
        status=200,
        decision="allow",
        cost_pico=10**15,
        attempts=[{"provider": "anthropic", "status": 200}],
    )
    await pg_store.insert_requests([entry])
    await pg_store.insert_requests([entry])  # idempotent by request id
    assert await pg_store.count_requests() == 1
    [row] = await pg_store.recent_requests()
    assert row["cost_pico"] == 10**15 and row["attempts"] == [{"provider": "anthropic", "status": 200}]


async def test_plain_tuple_inserts_store_what_sqlalchemy_stores_on_postgres() -> None:
    """The hot writes bind plain tuples to a fixed INSERT on PostgreSQL too: the rows read back
    exactly as the SQLAlchemy path's do, and a replayed row counts once."""
    from datetime import timedelta

    from sluice.audit.chain import make_record
    from sluice.storage.backends.sql import SqlStore
    from sluice.storage.records import AuditRecord, SpendRow

    ts = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=UTC)
    admin = await asyncpg.connect(PG + "/postgres")
    names = ["sluice_test_" + uuid.uuid4().hex[:8] for _ in range(2)]
    stores: list[SqlStore] = []
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
            store = SqlStore(f"{PG}/{name}")
            await store.migrate()
            stores.append(store)
        stores[1]._plain = False  # the SQLAlchemy path, as before
        audit: list[AuditRecord] = []
        for i in range(3):
            audit.append(make_record(b"k", "k1", audit[-1] if audit else None, ts, "request", "vk", {"i": i}))
        entry = RequestLogEntry(
            "req_1", ts, "/v1/messages", "anthropic_messages", 200, "allow", attempts=[{"ms": 1.5}], mcp_tools=("a",)
        )
        spend = [SpendRow(f"req_{i}", ts + timedelta(seconds=i), "vk", None, None, 7, 3) for i in range(3)]
        for store in stores:
            await store.insert_requests([entry])
            await store.record_spend(spend)
            await store.record_spend(spend[:1])  # a replay: nothing twice
            await store.append_audit(audit)
        fast, slow = stores
        assert await fast.query_requests(RequestQuery()) == await slow.query_requests(RequestQuery())
        assert await fast.spend_since(ts) == await slow.spend_since(ts) and len(await fast.spend_since(ts)) == 3
        assert [r async for r in fast.audit_records()] == [r async for r in slow.audit_records()] == audit
    finally:
        for store in stores:
            await store.close()
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_mcp_client_registrations_are_bounded_on_postgres(pg_store: Store) -> None:
    # The same cases as on SQLite (tests/unit/test_oauth_clients_store.py): migration 0020's table,
    # the bound's count and the pruning's NOT IN over gateway_grants.
    from tests.unit.test_oauth_clients_store import test_full_refuses_until_unused_old_registrations_make_room as full
    from tests.unit.test_oauth_clients_store import test_one_address_is_bounded_within_the_window as window

    await full(pg_store)
    await window(pg_store)


async def test_replicas_registering_at_once_never_pass_the_clients_bound() -> None:
    """Two (here six) replicas over one database registering at the same moment: each counts, then
    inserts, so without one lock across them all each could pass `clients_max` by one. Every round
    starts from an empty table with room for one, and six registrations race for it."""
    import asyncio

    from sluice.storage.grants import OAuthClient

    name = "sluice_test_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    replicas = [open_store(f"{PG}/{name}") for _ in range(6)]
    try:
        await replicas[0].migrate()
        db = await asyncpg.connect(f"{PG}/{name}")
        try:
            for round_ in range(15):
                await db.execute("DELETE FROM oauth_clients")

                async def register(n: int, store: Store, round_: int = round_) -> bool:
                    client = OAuthClient(f"mcp_{round_}_{n}", "c", ("http://localhost:1/callback",), 1000.0, f"a{n}")
                    return await store.create_client(client, most=1, most_from_address=10, since=0.0)

                stored = await asyncio.gather(*(register(n, s) for n, s in enumerate(replicas)))
                rows = await db.fetchval("SELECT count(*) FROM oauth_clients")
                assert rows == 1 and stored.count(True) == 1, (round_, rows, stored)
        finally:
            await db.close()
    finally:
        for store in replicas:
            await store.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
