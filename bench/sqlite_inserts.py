"""What a request costs the SQLite store to write: CPU per request-log row and per spend-ledger row,
with random request ids against time-ordered ones, on a store that already holds many rows.

The request log and the spend ledger are keyed by the request id. A random id lands anywhere in
their primary-key B-trees, so each commit dirties (and writes to the WAL, and checkpoints back) a
page for every new row, and on a store larger than the page cache reads one first; an id that
grows with time lands at the right edge, in the page the previous one dirtied. The other indexes
(by time, by key and time, ...) are keyed by the time already.

Builds the real schema (the store's migrations), fills it with `--rows` rows of each table whose
ids follow the scheme being measured (timestamps in order, as a gateway writes them), then times
`SqlStore.insert_requests` and `SqlStore.record_spend` (the writer thread's transactions, as the
gateway calls them) on a fresh copy per scheme and batch size, with process CPU (every thread).
Batch size = rows per commit: a gateway commits what arrives during the previous commit, about
two requests' worth at 16 connections (bench.proxy_overhead's full variant), one when idle.

Run: ``python -m bench.sqlite_inserts [--rows 200000] [--writes 4000] [--batches 1,2,8]``.
Writes ``bench/results/sqlite_inserts.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sluice.core.context import new_request_id
from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import RequestLogEntry, SpendRow

RESULTS = Path(__file__).resolve().parent / "results"
_rng = random.Random(7)


def random_id() -> str:
    """The scheme before: 96 random bits."""
    return f"req_{_rng.getrandbits(96):024x}"


SCHEMES: dict[str, Callable[[], str]] = {"random": random_id, "time_ordered": new_request_id}


def entry(request_id: str, ts: dt.datetime) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=request_id,
        ts=ts,
        path="/v1/messages",
        surface="anthropic_messages",
        status=200,
        decision="allow",
        virtual_key_id="vk_bench",
        virtual_key_name="bench",
        team_id="team_bench",
        client="claude-cli/2.1",
        provider="anthropic",
        provider_key_name="main",
        requested_model="claude-sonnet-4-5",
        model="claude-sonnet-4-5",
        input_tokens=1200,
        output_tokens=80,
        cost_pico=4_800_000_000,
        latency_ms=12.5,
        attempts=[{"provider": "anthropic", "model": "claude-sonnet-4-5", "status": 200, "ms": 12.1}],
    )


def spend(request_id: str, ts: dt.datetime) -> SpendRow:
    return SpendRow(request_id, ts, "vk_bench", "team_bench", None, 4_800_000_000, 1280)


async def build(path: Path, rows: int, make_id: Callable[[], str], start: dt.datetime) -> None:
    """The migrated store, then `rows` of each table in one transaction (fast: no per-row commit)."""
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    requests_sql, spend_sql = store._requests_shape.sql, store._spend_shape.sql
    requests_of, spend_of = store._requests_shape.rows, store._spend_shape.rows
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    step = dt.timedelta(milliseconds=2)
    for i in range(0, rows, 1000):
        ids = [make_id() for _ in range(min(1000, rows - i))]
        stamps = [start + step * (i + j) for j in range(len(ids))]
        conn.executemany(requests_sql, requests_of([entry(r, t) for r, t in zip(ids, stamps, strict=True)]))
        conn.executemany(spend_sql, spend_of([spend(r, t) for r, t in zip(ids, stamps, strict=True)]))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def measure(path: Path, writes: int, batch: int, make_id: Callable[[], str]) -> dict[str, float]:
    """CPU µs per row of each table's inserts, `batch` rows per commit, after the rows already there."""
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    out: dict[str, float] = {}
    try:
        for table in ("request_log", "spend_ledger"):
            now = dt.datetime.now(dt.UTC)
            await warm(store, table, make_id, now)
            started = time.process_time()
            for _ in range(writes // batch):
                now = dt.datetime.now(dt.UTC)
                ids = [make_id() for _ in range(batch)]
                if table == "request_log":
                    await store.insert_requests([entry(r, now) for r in ids])
                else:
                    await store.record_spend([spend(r, now) for r in ids])
            out[table] = (time.process_time() - started) * 1e6 / (writes // batch * batch)
    finally:
        await store.close()
    return out


async def warm(store: SqlStore, table: str, make_id: Callable[[], str], now: dt.datetime) -> None:
    """Opens the writer's connection and touches the tables' right edges once, outside the timing."""
    for _ in range(20):
        if table == "request_log":
            await store.insert_requests([entry(make_id(), now)])
        else:
            await store.record_spend([spend(make_id(), now)])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=200_000, help="rows of each table before measuring")
    p.add_argument("--writes", type=int, default=4000, help="rows inserted per measurement")
    p.add_argument("--batches", default="1,2,8", help="rows per commit")
    p.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="sluice-sqlite-inserts-"))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=2 * args.rows)
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for scheme, make_id in SCHEMES.items():
            grown = tmp / f"{scheme}.db"
            print(f"{scheme}: filling {args.rows} rows of each table ...", flush=True)
            asyncio.run(build(grown, args.rows, make_id, start))
            results[scheme] = {}
            for batch in batches:
                best: dict[str, float] = {}
                for _ in range(args.repeat):
                    copy = tmp / "run.db"
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{copy}{suffix}").unlink(missing_ok=True)
                    shutil.copy(grown, copy)
                    got = asyncio.run(measure(copy, args.writes, batch, make_id))
                    best = {k: min(v, best.get(k, v)) for k, v in got.items()}
                results[scheme][str(batch)] = {k: round(v, 1) for k, v in best.items()}
                print(f"  {batch} row(s) per commit: " + ", ".join(f"{k} {v:.1f} µs" for k, v in best.items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\ntime_ordered / random, CPU per row:")
    for batch in batches:
        b = str(batch)
        ratios = {t: results["time_ordered"][b][t] / results["random"][b][t] for t in results["random"][b]}
        print(f"  {batch} per commit: " + ", ".join(f"{t} {r:.2f}x" for t, r in ratios.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "run": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
        "rows_before": args.rows,
        "writes": args.writes,
        "cpu_us_per_row": results,
    }
    (args.out / "sqlite_inserts.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
