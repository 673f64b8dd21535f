"""Migration 0013 sums the sessions already in the log into the ledger, exactly as the writer
would have, and goes back down cleanly (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from importlib import resources
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sluice.app import open_store
from sluice.storage.backends.sql import normalise_url
from sluice.storage.records import RequestLogEntry, SessionQuery
from tests.unit.test_session_ledger import entry

PG = "postgresql://postgres@127.0.0.1:5432"


def alembic(url: str, to: str, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("sluice.storage").joinpath("migrations")))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    (command.downgrade if down else command.upgrade)(cfg, to)


def old_rows() -> list[RequestLogEntry]:
    return [
        entry(1, minutes=0, mcp_tools=("fs__read", "fs__read")),
        entry(2, minutes=5, model="claude-haiku-4-5", cost_pico=7),
        entry(3, minutes=9, status=429, decision="deny", error_kind="policy_rate_limited", cost_pico=0),
        entry(4, key="vk-b", session="s-9"),
        entry(5, session=None),
    ]


async def check(url: str) -> None:
    await asyncio.to_thread(alembic, url, "0012")
    engine = create_async_engine(normalise_url(url))
    sqlite = url.startswith("sqlite")
    async with engine.begin() as conn:  # the log as a 0012 gateway wrote it (no repo/branch/cwd columns)
        for e in old_rows():
            await conn.execute(
                text(
                    "INSERT INTO request_log (request_id, ts, path, surface, status, decision, error_kind, "
                    "virtual_key_id, team_id, client, session_id, model, stream, input_tokens, output_tokens, "
                    "cache_read_tokens, cache_write_tokens, cost_pico, latency_ms, attempts, mcp_tools, guardrails) "
                    "VALUES (:rid, :ts, '/v1/messages', 'anthropic', :status, :decision, :ek, :key, 'team-a', :client, "
                    ":sid, :model, false, :i, :o, :cr, 0, :cost, :lat, '[]', :tools, 0)"
                ),
                {
                    "rid": e.request_id,
                    "ts": e.ts.replace(tzinfo=None).isoformat(" ") if sqlite else e.ts,
                    "status": e.status,
                    "decision": e.decision,
                    "ek": e.error_kind,
                    "key": e.virtual_key_id,
                    "client": e.client,
                    "sid": e.session_id,
                    "model": e.model,
                    "i": e.input_tokens,
                    "o": e.output_tokens,
                    "cr": e.cache_read_tokens,
                    "cost": e.cost_pico,
                    "lat": e.latency_ms,
                    "tools": '["' + '","'.join(e.mcp_tools) + '"]' if e.mcp_tools else "[]",
                },
            )
    await engine.dispose()
    await asyncio.to_thread(alembic, url, "head")
    store = open_store(url)
    try:
        migrated = {s["session_id"]: s for s in await store.list_sessions(SessionQuery())}
        # What the writer makes of the same entries, in a fresh store of its own.
        assert set(migrated) == {"s-1", "s-9"}
        s = migrated["s-1"]
        assert (s["requests"], s["errors"], s["denied"], s["cost_pico"], s["input_tokens"]) == (3, 1, 1, 1007, 300)
        assert s["started_at"] == entry(1).ts and s["ended_at"] == entry(3, minutes=9).ts + timedelta(milliseconds=500)
        items = {(i["kind"], i["name"]): i["count"] for i in s["items"]}
        assert items == {
            ("model", "claude-sonnet-4-6"): 2,
            ("model", "claude-haiku-4-5"): 1,
            ("tool", "fs__read"): 2,
            ("error", "policy_rate_limited"): 1,
        }
        # New entries add to the migrated rows; the old ones written again add nothing.
        await store.insert_requests([*old_rows(), entry(6, minutes=20)])
        again = {x["session_id"]: x for x in await store.list_sessions(SessionQuery())}
        assert again["s-1"]["requests"] == 4 and again["s-9"]["requests"] == 1
    finally:
        await store.close()
    await asyncio.to_thread(alembic, url, "0012", True)
    await asyncio.to_thread(alembic, url, "head")


async def test_migration_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await check(f"sqlite:///{path}")


async def test_migration_on_postgresql() -> None:
    name = "sluice_test_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await check(f"{PG}/{name}")
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
