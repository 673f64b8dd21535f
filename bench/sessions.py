"""What the session ledger costs and what it buys, measured in one run on one machine.

1. The request-log writer path: `store.insert_requests` of the same entries, in the recorder's
   batches of 500, with session ids (each batch also adds to the ledger) and without (no ledger
   work): rows per second of each and the ratio.
2. The Sessions page's query on a large log: the ledger read (`ConsoleQueries.sessions`) against
   the log-based query it replaced (kept below as the baseline, verbatim in substance: the newest
   log rows a page at a time until 100 sessions are seen, then those sessions grouped through the
   (session_id, ts) index), over the same store, median and worst of `--repeat` runs.

Run: ``python -m bench.sessions [--rows 1000000] [--write-rows 200000] [--store sqlite|postgresql://...]``.
Writes ``bench/results/sessions_<store>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select

from sluice.app import open_store
from sluice.storage.backends.console_queries import ConsoleQueries, LogFilter
from sluice.storage.backends.console_rollup import _utc
from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_tables import request_log
from sluice.storage.records import RequestLogEntry

MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini", "gemini-2.5-pro", "gemini-2.5-flash"]
CLIENTS = ["claude-cli/2.1.197 (external, cli)", "codex_exec/0.171.0 (Debian)", "GeminiCLI/0.61.0/m (linux)"]
BATCH = 500


def entries(rows: int, keys: int, now: datetime, *, sessions: bool = True) -> list[RequestLogEntry]:
    rnd = random.Random(7)
    start = now - timedelta(days=30)
    span = (now - start).total_seconds()
    found = []
    per_key: dict[int, int] = {}
    for n in range(rows):
        k = int(rnd.paretovariate(1.2)) % keys
        per_key[k] = per_key.get(k, 0) + 1  # a key's sessions are 40 of its requests in a row
        deny = rnd.random() < 0.03
        found.append(
            RequestLogEntry(
                request_id=f"req-{n:08d}",
                ts=start + timedelta(seconds=span * n / rows),
                path="/v1/messages",
                surface="anthropic_messages",
                status=403 if deny else 200,
                decision="deny" if deny else "allow",
                error_kind="policy_model_denied" if deny else None,
                virtual_key_id=f"vk-{k:05d}",
                team_id=f"team-{k % 50:02d}",
                client=CLIENTS[k % len(CLIENTS)],
                session_id=f"sess-{k}-{per_key[k] // 40}" if sessions else None,
                model=MODELS[n % len(MODELS)],
                input_tokens=1200,
                output_tokens=300,
                cost_pico=0 if deny else rnd.randint(10**8, 5 * 10**10),
                latency_ms=850.0,
                repo=f"acme/repo-{k % 20}",
                branch="main" if n % 3 else f"feature-{k % 7}",
                mcp_tools=("fs__read_file",) if n % 11 == 0 else (),
            )
        )
    return found


async def write(store: SqlStore, batch_of: list[RequestLogEntry]) -> float:
    t = time.perf_counter()
    for i in range(0, len(batch_of), BATCH):
        await store.insert_requests(batch_of[i : i + BATCH])
    return time.perf_counter() - t


async def log_sessions(engine: Any, since: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """The Sessions page's query before the ledger (the baseline)."""
    c = request_log.c
    where = [c.ts >= since, c.session_id.is_not(None)]
    recent: list[str] = []
    before: tuple[datetime, str] | None = None
    async with engine.connect() as conn:
        while len(recent) < limit:
            stmt = select(c.session_id, c.ts, c.request_id).where(*where)
            if before is not None:
                stmt = stmt.where(or_(c.ts < before[0], and_(c.ts == before[0], c.request_id < before[1])))
            page = (await conn.execute(stmt.order_by(c.ts.desc(), c.request_id.desc()).limit(2000))).all()
            for session_id, _, _ in page:
                if session_id not in recent:
                    recent.append(session_id)
                    if len(recent) == limit:
                        break
            if len(page) < 2000:
                break
            before = (page[-1][1], page[-1][2])
        last = func.max(c.ts)
        stmt = (
            select(
                c.session_id,
                func.count().label("requests"),
                func.coalesce(func.sum(c.cost_pico), 0).label("cost_pico"),
                func.min(c.ts).label("first"),
                last.label("last"),
                func.count(func.distinct(c.model)).label("models"),
            )
            .where(*where, c.session_id.in_(recent))
            .group_by(c.session_id)
            .order_by(last.desc())
        )
        rows = (await conn.execute(stmt)).all()
    return [{**r._mapping, "first": _utc(r.first), "last": _utc(r.last)} for r in rows]


async def timed(make: Any, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await make()
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write-rows", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-sessions-bench-"))
    now = datetime.now(UTC)

    def url(name: str) -> str:
        return f"sqlite:///{tmp / name}.db" if args.store == "sqlite" else f"{args.store.rstrip('/')}_{name}"

    if args.store != "sqlite":
        import asyncpg

        admin = await asyncpg.connect(args.store.rsplit("/", 1)[0] + "/postgres")
        for name in ("ledger", "plain"):
            await admin.execute(f'DROP DATABASE IF EXISTS "{url(name).rsplit("/", 1)[1]}"')
            await admin.execute(f'CREATE DATABASE "{url(name).rsplit("/", 1)[1]}"')
        await admin.close()
    ledger, plain = open_store(url("ledger")), open_store(url("plain"))
    assert isinstance(ledger, SqlStore) and isinstance(plain, SqlStore)
    await ledger.migrate()
    await plain.migrate()
    try:
        made = entries(args.rows, args.keys, now)
        # 1. The writer path, the same entries with and without sessions, alternating halves so
        # neither store gets the warmer disk cache.
        sample = made[: args.write_rows]
        without = [replace(e, session_id=None) for e in sample]
        half = len(sample) // 2
        with_s = await write(ledger, sample[:half])
        without_s = await write(plain, without[:half])
        with_s += await write(ledger, sample[half:])
        without_s += await write(plain, without[half:])
        # The rest of the log (for the page's query), not timed.
        await write(ledger, made[args.write_rows :])
        queries = ConsoleQueries(ledger.engine)
        since = now - timedelta(hours=24)
        old = await log_sessions(ledger.engine, since)
        new = await queries.sessions(LogFilter(), since, 100)
        # The ledger is exact: each session's figures are its whole log's (the baseline counted only
        # the part of a session inside the 24 hours).
        assert len(old) == len(new) == 100, (len(old), len(new))
        c = request_log.c
        whole = (
            select(c.session_id, func.count(), func.sum(c.cost_pico), func.count(func.distinct(c.model)))
            .where(c.session_id.in_([r["session_id"] for r in new]))
            .group_by(c.session_id)
        )
        async with ledger.engine.connect() as conn:
            truth = {r[0]: (r[1], r[2], r[3]) for r in (await conn.execute(whole)).all()}
        assert {r["session_id"]: (r["requests"], r["cost_pico"], r["models"]) for r in new} == truth
        page_old = await timed(lambda: log_sessions(ledger.engine, since), args.repeat)
        page_new = await timed(lambda: queries.sessions(LogFilter(), since, 100), args.repeat)
        report = {
            "store": "sqlite" if args.store == "sqlite" else "postgresql",
            "rows": args.rows,
            "writer": {
                "rows": len(sample),
                "batch": BATCH,
                "with_ledger_rows_per_s": round(len(sample) / with_s),
                "without_ledger_rows_per_s": round(len(sample) / without_s),
                "ratio_with_over_without": round(without_s / with_s, 3),
            },
            "sessions_page_query": {
                "log_based_baseline": page_old,
                "ledger": page_new,
                "speedup_median": round(page_old["median_ms"] / max(page_new["median_ms"], 0.01), 1),
                "speedup_worst": round(page_old["max_ms"] / max(page_new["max_ms"], 0.01), 1),
            },
            "when": now.isoformat(),
        }
        print(json.dumps(report, indent=2))
        out = Path(__file__).parent / "results" / f"sessions_{report['store']}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        await ledger.close()
        await plain.close()


if __name__ == "__main__":
    asyncio.run(main())
