"""The spend journal and the ledger writer's fallback to it: a settlement the store cannot take
is fsynced locally, replayed once into the ledger (before counters are rebuilt), and refused when
the journal cannot take it either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.app import open_store
from sluice.governance.ledger_writer import LedgerWriter, SpendNotDurable
from sluice.governance.spend_journal import SpendJournal
from sluice.storage.ports import Store
from sluice.storage.records import SpendRow

DEAD_STORE = "postgresql://postgres@127.0.0.1:1/nothing"  # nothing listens: connection refused


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    await s.migrate()
    yield s
    await s.close()


def _row(i: int, cost: int = 7) -> SpendRow:
    return SpendRow(f"req-{i}", datetime.now(UTC), "vk-a", "team-a", None, cost, 3)


async def test_store_down_journals_then_a_restart_replays_once(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spend.jsonl"
    dead = open_store(DEAD_STORE)
    writer = LedgerWriter(dead, journal=SpendJournal(path), retry_s=60)
    await writer.write(_row(1))  # durable although the store refused it
    await writer.write(_row(2))
    assert writer.journalled == 2 and path.read_bytes().count(b"\n") == 2
    await writer.drain()  # the store is still down: the rows stay for the next start
    await dead.close()
    assert path.exists()

    restarted = LedgerWriter(store, journal=SpendJournal(path))
    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    # Counters are seeded from these totals: they include the outage's spend.
    assert await restarted.spend_totals("virtual_key", "vk-a", start, end) == (14, 6, 2)
    assert not path.exists()
    await LedgerWriter(store, journal=SpendJournal(path)).replay()
    await store.record_spend([_row(1)])  # the same request id again counts nothing
    assert await store.spend_totals("team", "team-a", start, end) == (14, 6, 2)


async def test_rows_arriving_during_the_outage_keep_and_a_torn_line_is_skipped(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spend.jsonl"
    journal = SpendJournal(path)
    journal.append([_row(1), _row(2)])
    with path.open("ab") as fh:
        fh.write(b'{"request_id": "req-3", "ts"')  # a write that never completed
    again = SpendJournal(path)
    assert [r.request_id for r in again.pending] == ["req-1", "req-2"]
    again.forget({"req-1"})
    assert [r.request_id for r in SpendJournal(path).pending] == ["req-2"]
    assert path.stat().st_mode & 0o777 == 0o600


async def test_full_disk_refuses_the_settlement_and_leaves_no_torn_line(tmp_path: Path) -> None:
    # /dev/full answers every write with ENOSPC, as a full file system does.
    dead = open_store(DEAD_STORE)
    journal = SpendJournal(tmp_path / "spend.jsonl")
    journal.path = Path("/dev/full")
    writer = LedgerWriter(dead, journal=journal, retry_s=60)
    with pytest.raises(SpendNotDurable):
        await writer.write(_row(1))
    assert writer.journalled == 0
    await dead.close()
