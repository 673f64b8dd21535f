"""The SQLite fast path for the hot writes stores exactly what the SQLAlchemy path stores (the
stored text of a timestamp is compared as text by every window query), commits inserts that
arrive together in one transaction, and lets one failing insert fail alone."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.audit.chain import make_record
from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import AuditRecord, RequestLogEntry, SpendRow

TS = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=UTC)


def _entry(n: int) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"req_{n}",
        ts=(TS + timedelta(seconds=n)).replace(microsecond=0 if n == 0 else TS.microsecond),
        path="/v1/messages",
        surface="anthropic_messages",
        status=200,
        decision="allow",
        virtual_key_id="vk-a",
        team_id=None,
        stream=bool(n % 2),
        input_tokens=12,
        output_tokens=n,
        cost_pico=10**15 + n,
        latency_ms=1.25,
        ttfb_ms=None,
        attempts=[{"provider": "anthropic", "status": 200, "ms": 1.5, "note": "é\u2028"}],
        mcp_tools=("srv__tool",) if n % 2 else (),
    )


def _spend(n: int) -> SpendRow:
    ts = (TS + timedelta(seconds=n)).replace(microsecond=0 if n == 0 else TS.microsecond)  # no fraction: still 6 digits
    return SpendRow(f"req_{n}", ts, "vk-a", "team-a" if n % 2 else None, None, 7 + n, 3)


def _audit(n: int) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    for i in range(n):
        out.append(make_record(b"k", "k1", out[-1] if out else None, TS, "request", "vk-a", {"i": i, "x": None}))
    return out


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    fast, slow = SqlStore(f"sqlite:///{tmp_path / 'fast.db'}"), SqlStore(f"sqlite:///{tmp_path / 'slow.db'}")
    assert fast._fast is not None
    slow._fast = None  # the SQLAlchemy path, as before
    for s in (fast, slow):
        await s.migrate()
    yield fast, slow
    for s in (fast, slow):
        await s.close()


def _raw(db: str, table: str, json_columns: tuple[str, ...]) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY 1")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    return [
        tuple(
            json.loads(v) if name in json_columns and v is not None else v for name, v in zip(names, row, strict=True)
        )
        for row in rows
    ]


async def test_the_fast_path_stores_what_sqlalchemy_stores(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    for store in stores:
        await store.insert_requests([_entry(n) for n in range(4)])
        await store.record_spend([_spend(n) for n in range(4)])
        await store.append_audit(_audit(3))
    for table, json_columns in (
        ("request_log", ("attempts", "mcp_tools")),
        ("spend_ledger", ()),
        ("audit_log", ("data",)),
    ):
        fast_rows = _raw(str(tmp_path / "fast.db"), table, json_columns)
        assert fast_rows == _raw(str(tmp_path / "slow.db"), table, json_columns) and len(fast_rows) >= 3
    fast, slow = stores
    start, end = TS + timedelta(seconds=1), TS + timedelta(seconds=3)  # a window over the stored text
    assert await fast.spend_totals("virtual_key", "vk-a", start, end) == (7 + 1 + 7 + 2, 6, 2)
    assert [r async for r in fast.audit_records()] == [r async for r in slow.audit_records()] == _audit(3)
    assert await fast.spend_since(TS) == await slow.spend_since(TS)


async def test_a_replay_counts_nothing_twice(stores: tuple[SqlStore, SqlStore]) -> None:
    fast, _ = stores
    await fast.record_spend([_spend(1), _spend(2)])
    await fast.record_spend([_spend(2), _spend(3)])
    assert await fast.spend_totals("virtual_key", "vk-a", TS, TS + timedelta(days=1)) == (8 + 9 + 10, 9, 3)


async def test_inserts_that_arrive_together_share_a_transaction_and_fail_alone(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    fast, _ = stores
    first = _audit(1)
    await fast.append_audit(first)
    # Queued in one turn of the loop: one transaction; the audit insert takes a taken sequence number.
    results = await asyncio.gather(
        fast.record_spend([_spend(1)]),
        fast.append_audit(first),
        fast.insert_requests([_entry(1)]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert await fast.count_requests() == 1
    assert await fast.spend_totals("virtual_key", "vk-a", TS, TS + timedelta(days=1)) == (8, 3, 1)
    assert [r.seq async for r in fast.audit_records()] == [1]


async def test_request_log_rows_wait_for_the_next_awaited_commit_or_their_linger(tmp_path: Path) -> None:
    """Nobody awaits request-log rows: they never start a commit of their own while an awaited
    one comes within the linger, and a shutdown commits what still lingers."""
    store = SqlStore(f"sqlite:///{tmp_path / 'linger.db'}", linger_s=60)
    await store.migrate()
    logged = asyncio.ensure_future(store.insert_requests([_entry(1)]))
    for _ in range(10):
        await asyncio.sleep(0)
    assert store.write_counts() == (0, 0) and not logged.done()  # lingering
    await store.record_spend([_spend(1)])  # awaited: committed at once, and takes the row along
    await logged
    assert store.write_counts() == (1, 2)
    lingering = asyncio.ensure_future(store.insert_requests([_entry(2)]))
    for _ in range(10):
        await asyncio.sleep(0)
    await store.close()  # not left to its 60 s timer
    await lingering
    assert store.write_counts() == (2, 3)


async def test_a_linger_ends_by_its_timer(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'linger.db'}", linger_s=0.05)
    await store.migrate()
    await asyncio.wait_for(store.insert_requests([_entry(1), _entry(2)]), timeout=5)
    assert store.write_counts() == (1, 2)
    assert await store.count_requests() == 2
    await store.close()
