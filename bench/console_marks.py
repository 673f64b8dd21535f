"""What the console roll-up's hour marks cost the request log's writer: the recorder's own insert
(`SqlStore.insert_requests`, batches as the recorder sends them) with a marking trigger and
without it, in interleaved rounds on the same store, so the ratio is measured against a baseline
of the same run. On PostgreSQL the trigger is migration 0017's; on SQLite it is the one that was
measured and left out (about 35 µs of CPU per row; SQLite's refresh reads rows by rowid instead).

Run: ``python -m bench.console_marks [--store sqlite|postgresql://...] [--rounds 6] [--rows 20000] [--batch 50]``.
Writes ``bench/results/console_marks_<store>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import RequestLogEntry

SQLITE_TRIGGER = """
CREATE TRIGGER console_rollup_mark AFTER INSERT ON request_log
BEGIN
    INSERT OR IGNORE INTO console_rollup_dirty (hour, claimed)
        VALUES (strftime('%Y-%m-%d %H:00:00', NEW.ts), 0);
END
"""


def _entries(prefix: str, rows: int, now: datetime) -> list[RequestLogEntry]:
    return [
        RequestLogEntry(
            request_id=f"{prefix}-{i}",
            ts=now - timedelta(seconds=i % 7200),
            path="/v1/messages",
            surface="anthropic",
            status=200,
            decision="allow",
            virtual_key_id=f"vk-{i % 500}",
            team_id=f"team-{i % 20}",
            model="claude-sonnet-4-5",
            provider="anthropic",
            cost_pico=10**9,
            attempts=[{"provider": "anthropic", "status": 200}],
        )
        for i in range(rows)
    ]


async def _insert(store: SqlStore, entries: list[RequestLogEntry], batch: int) -> tuple[float, float]:
    """(wall, CPU of this process) µs per row: SQLite's writer thread is in this process, so its
    CPU is counted (PostgreSQL's server is not); the CPU figure is steadier on a loaded machine."""
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(entries), batch):
        await store.insert_requests(entries[i : i + batch])
    n = len(entries)
    return (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def run(store_url: str, rounds: int, rows: int, batch: int) -> dict[str, Any]:
    from importlib import import_module

    migration = import_module("sluice.storage.migrations.versions.0017_console_rollup_dirty")
    store = SqlStore(store_url)
    await store.migrate()
    pg = not store.is_sqlite
    create = migration._PG_TRIGGER if pg else SQLITE_TRIGGER
    drop = "DROP TRIGGER console_rollup_mark" + (" ON request_log" if pg else "")
    with_marks: list[tuple[float, float]] = []
    without: list[tuple[float, float]] = []
    now = datetime.now(UTC)
    try:
        if pg:
            async with store._write_lock, store.engine.begin() as conn:
                await conn.exec_driver_sql(drop)  # the rounds add it back when they measure with it
        for n in range(rounds):
            for marked in (n % 2 == 0, n % 2 == 1):  # alternate which goes first
                if marked:
                    async with store._write_lock, store.engine.begin() as conn:
                        await conn.exec_driver_sql(create)
                per_row = await _insert(store, _entries(f"r{n}{int(marked)}", rows, now), batch)
                (with_marks if marked else without).append(per_row)
                async with store._write_lock, store.engine.begin() as conn:
                    if marked:
                        await conn.exec_driver_sql(drop)
                    await conn.exec_driver_sql("DELETE FROM console_rollup_dirty")
        if pg:
            async with store._write_lock, store.engine.begin() as conn:
                await conn.exec_driver_sql(create)
    finally:
        await store.close()

    def med(found: list[tuple[float, float]], i: int) -> float:
        return statistics.median(x[i] for x in found)

    return {
        "store": "postgresql" if pg else "sqlite",
        "rows_per_round": rows,
        "batch": batch,
        "rounds": rounds,
        "us_per_row_without_marks": [[round(w, 1), round(c, 1)] for w, c in without],  # [wall, cpu]
        "us_per_row_with_marks": [[round(w, 1), round(c, 1)] for w, c in with_marks],
        "wall_median_without": round(med(without, 0), 1),
        "wall_median_with": round(med(with_marks, 0), 1),
        "wall_ratio": round(med(with_marks, 0) / med(without, 0), 3),
        "cpu_median_without": round(med(without, 1), 1),
        "cpu_median_with": round(med(with_marks, 1), 1),
        "cpu_ratio": round(med(with_marks, 1) / med(without, 1), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-marks-"))
    url = f"sqlite:///{tmp / 'marks.db'}"
    name = None
    if args.store.startswith("postgresql"):
        import asyncpg

        name = "sluice_marks_" + uuid.uuid4().hex[:8]

        async def create_db() -> None:
            admin = await asyncpg.connect(args.store.rstrip("/") + "/postgres")
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()

        asyncio.run(create_db())
        url = f"{args.store.rstrip('/')}/{name}"
    try:
        result = asyncio.run(run(url, args.rounds, args.rows, args.batch))
    finally:
        if name is not None:
            import asyncpg

            async def drop_db() -> None:
                admin = await asyncpg.connect(args.store.rstrip("/") + "/postgres")
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                await admin.close()

            asyncio.run(drop_db())
    out = Path(__file__).parent / "results" / f"console_marks_{result['store']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("us_per_row")}, indent=2))


if __name__ == "__main__":
    main()
