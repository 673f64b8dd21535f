"""The console's spend roll-up agrees with the request log it summarises (sums computed here from
the rows themselves), for the whole gateway and within a team or a key, after a full build and
after incremental refreshes (late rows within the margin included, nothing counted twice)."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from sluice.storage.backends.console_queries import ConsoleQueries, Within, day_start
from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import RequestLogEntry
from tests.console.test_console import entry


def by(rows: list[RequestLogEntry], field: str, since: datetime, **where: str) -> dict[str, int]:
    found: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.ts >= since and all(getattr(r, k) == v for k, v in where.items()):
            found[getattr(r, field) or ""] += r.cost_pico
    return dict(found)


PG = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        found = SqlStore(f"sqlite:///{tmp_path / 's.db'}")
        await found.migrate()
        yield found
        await found.close()
        return
    name = "sluice_console_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    # A session time zone 5:45 off UTC: the roll-up's hours must stay UTC hours.
    await admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Kathmandu'")
    found = SqlStore(f"{PG}/{name}")
    try:
        await found.migrate()
        yield found
    finally:
        await found.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_rollup_matches_the_log(store: SqlStore) -> None:
    q = ConsoleQueries(store.engine, write_lock=store._write_lock)
    now = datetime.now(UTC).replace(minute=30)
    models = ["m-a", "m-b", "m-c"]
    rows = [
        entry(f"r{i}", f"vk-{i % 3}", f"team-{i % 2}", 10**9 * (i + 1), ts=now - timedelta(hours=i * 7))
        for i in range(40)
    ]
    rows = [dataclasses.replace(r, model=models[i % 3]) for i, r in enumerate(rows)]
    # Five minutes into the UTC day: today's, whatever the database session's time zone.
    rows.append(entry("edge", "vk-2", "team-0", 11 * 10**12, ts=day_start(now) + timedelta(minutes=5)))
    await store.insert_requests(rows)
    await q.refresh(now, force=True)
    since = day_start(now) - timedelta(days=9)

    def got(totals: list) -> dict[str, int]:  # type: ignore[type-arg]
        return {t.value or "": t.cost_pico for t in totals}

    assert got(await q.spend_by("team", since, now, 10)) == by(rows, "team_id", since)
    assert got(await q.spend_by("team", day_start(now), now, 10)) == by(rows, "team_id", day_start(now))
    assert got(await q.spend_by("key", since, now, 10)) == by(rows, "virtual_key_id", since)
    team0 = Within("team", ("team-0",))
    assert got(await q.spend_by("key", since, now, 10, team0)) == by(rows, "virtual_key_id", since, team_id="team-0")
    key1 = Within("key", ("vk-1",))
    assert got(await q.spend_by("model", since, now, 10, key1)) == by(rows, "model", since, virtual_key_id="vk-1")
    trend = await q.trend("d", since)
    assert sum(t.requests for _, t in trend) == sum(1 for r in rows if r.ts >= since)
    assert sum(t.cost_pico for _, t in await q.trend("d", since, key1)) == sum(
        by(rows, "virtual_key_id", since, virtual_key_id="vk-1").values()
    )
    # New rows and a late one (an hour old, inside the margin) are picked up by the next refresh.
    more = [
        entry("new", "vk-0", "team-0", 5 * 10**12, ts=now),
        entry("late", "vk-1", "team-1", 7 * 10**12, ts=now - timedelta(hours=1)),
    ]
    await store.insert_requests(more)
    rows += more
    await q.refresh(now + timedelta(minutes=1), force=True)
    today = day_start(now)
    assert got(await q.spend_by("team", today, now, 10)) == by(rows, "team_id", today)
    # Refreshing again changes nothing (no row counted twice).
    await q.refresh(now + timedelta(minutes=2), force=True)
    assert got(await q.spend_by("team", today, now, 10)) == by(rows, "team_id", today)
    assert got(await q.per_scope("key", ["vk-0", "vk-1"], today, now)) == {
        k: v for k, v in by(rows, "virtual_key_id", today).items() if k in ("vk-0", "vk-1")
    }


async def test_late_rows_are_counted_however_late(store: SqlStore) -> None:
    """A row landing days late (a spill replayed) is in the roll-up after the next refresh: its
    insert marked its hour. Before migration 0017 the refresh re-read only the last two hours."""
    q = ConsoleQueries(store.engine, write_lock=store._write_lock)
    now = datetime.now(UTC).replace(minute=30)
    rows = [entry(f"r{i}", "vk-0", "team-0", 10**9 * (i + 1), ts=now - timedelta(hours=i)) for i in range(5)]
    await store.insert_requests(rows)
    await q.refresh(now, force=True)
    late = [
        entry("late-3h", "vk-1", "team-1", 3 * 10**12, ts=now - timedelta(hours=3, minutes=10)),
        entry("late-2d", "vk-1", "team-1", 5 * 10**12, ts=now - timedelta(days=2)),
        entry("late-9d", "vk-2", "team-0", 7 * 10**12, ts=now - timedelta(days=9)),  # a day folded already
    ]
    await store.insert_requests(late)
    rows += late
    # A replayed duplicate is skipped by the log and must not be counted twice either.
    await store.insert_requests([late[0]])
    await q.refresh(now + timedelta(minutes=1), force=True)
    since = day_start(now) - timedelta(days=12)
    got = {t.value or "": t.cost_pico for t in await q.spend_by("key", since, now, 10)}
    assert got == by(rows, "virtual_key_id", since)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=48)  # the late-2d row's hour
    hourly = await q.trend("h", hour)
    assert sum(t.cost_pico for _, t in hourly) == sum(r.cost_pico for r in rows if r.ts >= hour)
    async with store.engine.connect() as conn:
        marks = (await conn.exec_driver_sql("SELECT count(*) FROM console_rollup_dirty")).scalar()
    assert marks == 0  # every claimed mark was dropped


async def test_one_mark_per_hour(store: SqlStore) -> None:
    """A busy hour costs PostgreSQL's mark table one row, not one per request (SQLite has no
    trigger: its refresh reads rows by rowid)."""
    if store.is_sqlite:
        async with store.engine.connect() as conn:
            found = (await conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'")).scalar()
        assert found == 0
        return
    now = datetime.now(UTC).replace(minute=0, second=1)
    await store.insert_requests([entry(f"a{i}", "vk-0", "team-0", 1, ts=now + timedelta(seconds=i)) for i in range(30)])
    await store.insert_requests([entry(f"b{i}", "vk-0", "team-0", 1, ts=now + timedelta(seconds=i)) for i in range(30)])
    async with store.engine.connect() as conn:
        marks = (await conn.exec_driver_sql("SELECT count(*) FROM console_rollup_dirty")).scalar()
    assert marks == 1


async def test_rebuild_from_the_log(store: SqlStore) -> None:
    """`rebuild` rewrites every day from the log (e.g. a roll-up edited or built by an older
    gateway) and reports each day's progress."""
    q = ConsoleQueries(store.engine, write_lock=store._write_lock)
    now = datetime.now(UTC).replace(minute=30)
    rows = [entry(f"r{i}", f"vk-{i % 2}", "team-0", 10**10, ts=now - timedelta(days=i)) for i in range(4)]
    await store.insert_requests(rows)
    await q.refresh(now, force=True)
    async with store._write_lock, store.engine.begin() as conn:  # a roll-up that disagrees with its log
        await conn.exec_driver_sql("UPDATE console_rollup SET cost_pico = cost_pico * 3")
    seen: list[tuple[int, int]] = []
    days = await q.rebuild(None, now, lambda day, done, total: seen.append((done, total)))
    assert days == 4 and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    since = day_start(now) - timedelta(days=5)
    got = {t.value or "": t.cost_pico for t in await q.spend_by("key", since, now, 10)}
    assert got == by(rows, "virtual_key_id", since)


def test_rebuild_rollup_command(tmp_path: Path) -> None:
    """`sluice console rebuild-rollup` rebuilds from the log with a line per day, and refuses a
    --since that is not a time."""
    import asyncio

    from typer.testing import CliRunner

    from sluice.cli.main import app

    url = f"sqlite:///{tmp_path / 'c.db'}"
    now = datetime.now(UTC)

    async def seed() -> None:
        found = SqlStore(url)
        await found.migrate()
        await found.insert_requests(
            [entry(f"r{i}", "vk-0", "team-0", 10**9, ts=now - timedelta(days=i)) for i in range(3)]
        )
        await found.close()

    asyncio.run(seed())
    runner = CliRunner()
    done = runner.invoke(app, ["console", "rebuild-rollup", "--store", url])
    assert done.exit_code == 0, done.output
    assert "1/3 day(s)" in done.output and "3/3 day(s)" in done.output and "rebuilt 3 day(s)" in done.output
    since = (now - timedelta(days=1)).date().isoformat()
    done = runner.invoke(app, ["console", "rebuild-rollup", "--store", url, "--since", since])
    assert done.exit_code == 0 and "2/2 day(s)" in done.output, done.output
    assert runner.invoke(app, ["console", "rebuild-rollup", "--store", url, "--since", "yesterday"]).exit_code == 2


async def test_sqlite_rowid_given_again_after_the_newest_rows_are_deleted(tmp_path: Path) -> None:
    """Deleting the newest rows lets SQLite give their rowids again; the refresh notices that the
    row its mark names is another one and reads the whole log again, so nothing is missed."""
    store = SqlStore(f"sqlite:///{tmp_path / 'r.db'}")
    await store.migrate()
    try:
        q = ConsoleQueries(store.engine, write_lock=store._write_lock)
        now = datetime.now(UTC).replace(minute=30)
        rows = [entry(f"r{i}", "vk-0", "team-0", 10**9, ts=now - timedelta(hours=i)) for i in range(4)]
        await store.insert_requests(rows)
        await q.refresh(now, force=True)
        async with store._write_lock, store.engine.begin() as conn:  # the newest two rows go
            await conn.exec_driver_sql("DELETE FROM request_log WHERE request_id IN ('r2', 'r3')")
        rows = rows[:2]
        again = [entry(f"n{i}", "vk-1", "team-0", 3 * 10**9, ts=now - timedelta(days=2, hours=i)) for i in range(3)]
        await store.insert_requests(again)  # rowids 3, 4 again, and 5
        rows += again
        await q.refresh(now + timedelta(minutes=1), force=True)
        since = day_start(now) - timedelta(days=4)
        got = {t.value or "": t.cost_pico for t in await q.spend_by("key", since, now, 10)}
        assert got == by(rows, "virtual_key_id", since)
    finally:
        await store.close()


async def test_postgresql_claim_waits_for_a_writer_that_relied_on_the_mark(tmp_path: Path) -> None:
    """A writer whose hour is already marked inserts no mark of its own but holds a share lock on
    the existing one until it commits: a refresh claiming the marks meanwhile waits, then reads
    the writer's row. (Were the claim not to wait, it would drop the mark and miss the row.)"""
    import asyncio

    from sluice.core.tasks import spawn

    name = "sluice_console_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    store = SqlStore(f"{PG}/{name}")
    writer = None
    try:
        await store.migrate()
        q = ConsoleQueries(store.engine, write_lock=store._write_lock)
        now = datetime.now(UTC).replace(minute=30)
        await store.insert_requests([entry("first", "vk-0", "team-0", 10**9, ts=now)])
        await q.refresh(now, force=True)
        await store.insert_requests([entry("second", "vk-0", "team-0", 10**9, ts=now)])  # marks the hour again
        writer = await asyncpg.connect(f"{PG}/{name}")
        tx = writer.transaction()
        await tx.start()
        await writer.execute(
            "INSERT INTO request_log (request_id, ts, path, surface, status, decision, client, stream, input_tokens,"
            " output_tokens, cache_read_tokens, cache_write_tokens, cost_pico, latency_ms, attempts, virtual_key_id,"
            " guardrails) VALUES ('held', $1, '/v1/messages', 'anthropic', 200, 'allow', '', false, 0, 0, 0, 0,"
            " 5000000000000, 0, '[]', 'vk-1', 0)",
            now,
        )
        refreshing = spawn(q.refresh(now + timedelta(minutes=1), force=True), name="refresh")
        await asyncio.sleep(0.5)  # a claim that did not wait would finish here, before the commit
        await tx.commit()
        await refreshing
        got = {t.value or "": t.cost_pico for t in await q.spend_by("key", day_start(now), now, 10)}
        assert got == {"vk-0": 2 * 10**9, "vk-1": 5 * 10**12}
    finally:
        if writer is not None:
            await writer.close()
        await store.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_mcp_grants_reads_only_keys_with_a_grant(store: SqlStore) -> None:
    """The MCP page's key list filters in SQL on non-empty tool and group lists (in both stores'
    JSON dialects): a key with an empty `mcp` document is not read."""
    from sluice.storage.backends.console_queries import KeyVisibility
    from sluice.storage.records import VirtualKey

    for key_id, tools, groups in (("vk-t", ("srv/*",), ()), ("vk-g", (), ("readers",)), ("vk-none", (), ())):
        await store.create_key(
            VirtualKey(key_id, key_id, f"h-{key_id}", "sk", (), mcp_tools=tools, mcp_tool_groups=groups)
        )
    q = ConsoleQueries(store.engine, write_lock=store._write_lock)
    assert [k.id for k in await q.mcp_grants(KeyVisibility(everything=True))] == ["vk-g", "vk-t"]
