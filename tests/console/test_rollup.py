"""The console's spend roll-up agrees with the request log it summarises, after a full build and
after incremental refreshes (late rows within the margin included)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sluice.storage.backends.console_queries import ConsoleQueries, LogFilter, day_start
from sluice.storage.backends.sql import SqlStore
from tests.console.test_console import entry


async def test_rollup_matches_the_log(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    q = ConsoleQueries(store.engine, write_lock=store._write_lock)
    now = datetime.now(UTC).replace(minute=30)
    try:
        rows = [
            entry(f"r{i}", f"vk-{i % 3}", f"team-{i % 2}", 10**9 * (i + 1), ts=now - timedelta(hours=i * 7))
            for i in range(40)
        ]
        await store.insert_requests(rows)
        await q.refresh(now, force=True)
        since = day_start(now) - timedelta(days=20)
        by_team = {t.value: t.cost_pico for t in await q.spend_by("team", since, now, 10)}
        raw = {t.value: t.cost_pico for t in await q.spend_of("team", since, LogFilter(), 10)}
        assert by_team == raw and sum(by_team.values()) > 0
        trend = await q.trend("d", since)
        assert sum(t.requests for _, t in trend) == sum(1 for r in rows if r.ts >= since)
        # New rows and a late one (an hour old, inside the margin) are picked up by the next refresh.
        await store.insert_requests(
            [
                entry("new", "vk-0", "team-0", 5 * 10**12, ts=now),
                entry("late", "vk-1", "team-1", 7 * 10**12, ts=now - timedelta(hours=1)),
            ]
        )
        await q.refresh(now + timedelta(minutes=1), force=True)
        today = {t.value: t.cost_pico for t in await q.spend_by("team", day_start(now), now, 10)}
        raw_today = {t.value: t.cost_pico for t in await q.spend_of("team", day_start(now), LogFilter(), 10)}
        assert today == raw_today and today["team-0"] >= 5 * 10**12
        # Refreshing again changes nothing (no row counted twice).
        await q.refresh(now + timedelta(minutes=2), force=True)
        assert {t.value: t.cost_pico for t in await q.spend_by("team", day_start(now), now, 10)} == today
    finally:
        await store.close()
