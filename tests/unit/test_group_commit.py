"""Group commit of the spend ledger and the audit log: a write that finds the writer idle is
committed at once (no fixed wait for company, which a request at low load would pay whole), and
the writes that arrive while a commit runs share the next one. The loop is turned, no time passes."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluice.audit import checkpoints
from sluice.audit.log import AuditLog
from sluice.governance.ledger_writer import LedgerWriter
from sluice.settings import AuditConfig
from sluice.storage.records import AuditRecord, SpendRow


async def _turns(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class _HeldLedger:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()

    async def record_spend(self, rows: list[SpendRow]) -> None:
        self.batches.append([r.request_id for r in rows])
        await self.release.wait()


def _row(i: int) -> SpendRow:
    return SpendRow(f"req-{i}", datetime.now(UTC), "vk-a", "team-a", None, 7, 3)


@pytest.mark.parametrize("waited", [True, False])
async def test_ledger_commits_at_once_when_idle_and_batches_what_arrives_meanwhile(waited: bool) -> None:
    ledger = _HeldLedger()
    writer = LedgerWriter(ledger)  # type: ignore[arg-type]

    def settle(i: int) -> asyncio.Future[None] | None:
        if waited:
            return asyncio.ensure_future(writer.write(_row(i)))
        writer.write_later(_row(i))
        return None

    first = settle(1)
    await _turns()
    assert ledger.batches == [["req-1"]]  # committing already: nothing waited for company
    later = [settle(i) for i in (2, 3, 4)]
    await _turns()
    assert ledger.batches == [["req-1"]]  # one commit at a time; these wait for the next
    ledger.release.set()
    await _turns()
    assert ledger.batches == [["req-1"], ["req-2", "req-3", "req-4"]]
    if waited:
        assert first is not None and first.done()
        assert all(f is not None and f.done() for f in later)
    await writer.drain()


async def test_with_a_linger_unwaited_rows_join_the_next_waited_commit() -> None:
    ledger = _HeldLedger()
    ledger.release.set()
    writer = LedgerWriter(ledger, linger_s=60)  # type: ignore[arg-type]
    writer.write_later(_row(1))
    writer.write_later(_row(2))
    await _turns()
    assert ledger.batches == []  # nobody waits for them: they linger
    await writer.write(_row(3))  # a waited settlement commits at once, and takes them along
    assert ledger.batches == [["req-1", "req-2", "req-3"]]
    writer.write_later(_row(4))
    await _turns()
    assert ledger.batches == [["req-1", "req-2", "req-3"]]
    await writer.drain()  # shutdown: what lingers is committed, not left to the timer
    assert ledger.batches[-1] == ["req-4"]


async def test_a_linger_ends_by_its_timer_and_rows_arriving_during_a_commit_linger_again() -> None:
    ledger = _HeldLedger()
    writer = LedgerWriter(ledger, linger_s=0.05)  # type: ignore[arg-type]
    writer.write_later(_row(1))
    await asyncio.sleep(0.1)
    assert ledger.batches == [["req-1"]]  # committed when the linger ran out
    writer.write_later(_row(2))  # arrives while req-1 commits (the ledger holds it)
    ledger.release.set()
    await _turns()
    assert ledger.batches == [["req-1"]]  # not committed straight after: it lingers in turn
    await asyncio.sleep(0.1)
    assert ledger.batches == [["req-1"], ["req-2"]]
    await writer.drain()


async def test_ledger_totals_include_rows_still_lingering(tmp_path: Path) -> None:
    from datetime import timedelta

    from sluice.app import open_store

    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    await store.migrate()
    writer = LedgerWriter(store, linger_s=60)
    writer.write_later(_row(1))
    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    # A counter is seeded from these totals (a limit added to a key): the lingering spend counts.
    assert await writer.spend_totals("virtual_key", "vk-a", start, end) == (7, 3, 1)
    await writer.drain()
    await store.close()


class _HeldAuditStore:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def last_audit(self) -> AuditRecord | None:
        return None

    async def append_audit(self, records: list[AuditRecord]) -> None:
        self.batches.append([r.seq for r in records])
        await self.release.wait()


async def test_audit_log_commits_at_once_when_idle_and_batches_what_arrives_meanwhile() -> None:
    store = _HeldAuditStore()
    audit = AuditLog(AuditConfig(hmac_key="k" * 32, checkpoints=False), store)  # type: ignore[arg-type]
    first = asyncio.ensure_future(audit.append("request", "vk-a", {"n": 1}))
    await _turns()
    assert store.batches == [[1]]
    later = [asyncio.ensure_future(audit.append("request", "vk-a", {"n": n})) for n in (2, 3)]
    await _turns()
    assert store.batches == [[1]]
    store.release.set()
    records = [await first, *[await f for f in later]]
    assert store.batches == [[1], [2, 3]]
    assert [r.seq for r in records if r is not None] == [1, 2, 3]
    await audit.drain()


async def test_a_checkpoint_is_fsynced_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced_on: list[int] = []
    real_fsync = checkpoints.os.fsync

    def spy(fd: int) -> None:
        synced_on.append(threading.get_ident())
        real_fsync(fd)

    monkeypatch.setattr(checkpoints.os, "fsync", spy)
    store = _HeldAuditStore()
    store.release.set()
    config = AuditConfig(
        hmac_key="k" * 32,
        checkpoint_key="YmVuY2gtY2hlY2twb2ludC1rZXktMDEyMzQ1Njc4OWE=",
        checkpoint_path=str(tmp_path / "cp.jsonl"),
        checkpoint_every_records=2,
    )
    audit = AuditLog(config, store)  # type: ignore[arg-type]
    for n in range(3):
        await audit.append("request", "vk-a", {"n": n})
    await audit.drain()
    assert [cp.seq for cp in checkpoints.read(tmp_path / "cp.jsonl")][-1] == 3
    assert synced_on and threading.get_ident() not in synced_on
