"""The admin API over the real PostgreSQL on 127.0.0.1:5432: keys, config objects in one
transaction, request log queries and spend by day (date() on timestamptz)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from sluice.app import Services
from sluice.storage.records import ConfigObject, RequestLogEntry
from tests.admin.conftest import Client, admin_config, as_role, start

PG = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
async def pg_admin(tmp_path: Path) -> AsyncIterator[tuple[Services, Client]]:
    name = "sluice_admin_" + uuid.uuid4().hex[:8]
    root = await asyncpg.connect(PG + "/postgres")
    await root.execute(f'CREATE DATABASE "{name}"')
    services, client = await start(admin_config(tmp_path, f"{PG}/{name}"))
    try:
        yield services, client
    finally:
        await services.stop()
        await root.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await root.close()


async def test_admin_api_on_postgres(pg_admin: tuple[Services, Client]) -> None:
    services, c = pg_admin
    r = await c.post("/api/keys", json={"id": "vk-pg", "team_id": "team-a", "user_id": "u-1"})
    assert r.status == 201
    secret = r.json()["secret"]
    new = await c.post("/api/keys/vk-pg/rotate", json={"overlap_seconds": 60}, token=as_role("team-lead", "team-a"))
    assert new.status == 200
    assert (await services.keys.authenticate(secret)).id == "vk-pg"  # the overlap
    assert (await services.keys.authenticate(new.json()["secret"])).id == "vk-pg"
    assert (await c.put("/api/teams/team-a", json={"id": "team-a", "name": "A"})).status == 200
    body = {"id": "b", "virtual_key_id": "vk-pg", "max_limit": "2.5", "reset_duration": "1d"}
    assert (await c.post("/api/budgets", json=body)).status == 201
    events = (await c.get("/api/config/events")).json()["items"]
    assert [e["kind"] for e in events] == ["budget", "team", "virtual_key", "virtual_key"]

    await services.store.insert_requests(
        [
            RequestLogEntry(
                request_id=f"r{i}",
                ts=datetime.now(UTC),
                path="/v1/messages",
                surface="anthropic_messages",
                status=200,
                decision="allow",
                virtual_key_id="vk-pg",
                team_id="team-a",
                model="m",
                cost_pico=10**12,
            )
            for i in range(3)
        ]
    )
    rows = (await c.get("/api/spend", query={"group_by": "day"})).json()["rows"]
    assert len(rows) == 1 and rows[0]["cost_usd"] == "3" and rows[0]["group"] == datetime.now(UTC).date().isoformat()
    rows = (await c.get("/api/spend", query={"group_by": "user"})).json()["rows"]
    assert rows[0]["group"] == "u-1"
    page = (await c.get("/api/requests", query={"user": "u-1", "limit": 2})).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2


async def test_apply_is_atomic_on_postgres(pg_admin: tuple[Services, Client]) -> None:
    services, _ = pg_admin
    good = ConfigObject("team", "t1", {"id": "t1"}, "apply")
    too_long = ConfigObject("team", "x" * 500, {"id": "x"}, "apply")  # longer than the id column
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        await services.store.apply_objects([good, too_long], [], "test")
    assert await services.store.list_objects() == []
