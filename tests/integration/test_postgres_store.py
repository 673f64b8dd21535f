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
from sluice.storage.records import ProviderGrant, RequestLogEntry, VirtualKey

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
