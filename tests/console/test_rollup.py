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
