from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluice.app import open_store
from sluice.audit.recorder import RequestRecorder
from sluice.storage.records import RequestLogEntry


def _entry(n: int) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"req_{n}",
        ts=datetime.now(UTC),
        path="/v1/messages",
        surface="anthropic_messages",
        status=200,
        decision="allow",
        cost_pico=n,
    )


async def test_full_queue_spills_and_nothing_is_lost(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    spill = tmp_path / "spill.jsonl"
    recorder = RequestRecorder(store, queue_size=5, batch_size=2, spill_path=spill)
    # Not started: the writer is not draining, so the 6th record onwards overflows to disk.
    for n in range(20):
        recorder.record(_entry(n))
    assert recorder.spilled == 15
    await recorder.spilled_to_disk()
    assert spill.exists() and spill.read_bytes().count(b"\n") == 15
    await recorder.start()  # replays the spill, then drains the queue
    await recorder.flush()
    await recorder.stop()
    assert await store.count_requests() == 20
    assert not spill.exists()
    await store.close()


async def test_shutdown_drains_queue(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    recorder = RequestRecorder(store, queue_size=10_000, batch_size=50, spill_path=tmp_path / "spill.jsonl")
    await recorder.start()
    for n in range(1000):
        recorder.record(_entry(n))
    await recorder.stop()
    assert await store.count_requests() == 1000
    assert recorder.spilled == 0
    await store.close()


async def test_replayed_batch_is_not_counted_twice(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    await store.insert_requests([_entry(1), _entry(2)])
    await store.insert_requests([_entry(2), _entry(3)])
    assert await store.count_requests() == 3
    await store.close()


class _SlowStore:
    """A request-log store whose inserts can be held, to see what a writer batches."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def insert_requests(self, entries: list[RequestLogEntry]) -> None:
        self.batches.append([e.request_id for e in entries])
        await self.release.wait()


async def _turns(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_an_idle_writer_inserts_at_once_and_batches_only_what_arrives_during_an_insert(tmp_path: Path) -> None:
    store = _SlowStore()
    recorder = RequestRecorder(store, spill_path=tmp_path / "spill.jsonl")  # type: ignore[arg-type]
    await recorder.start()
    store.release.clear()
    recorder.record(_entry(1))
    await _turns()  # no timer: a few turns of the loop, no time passes
    assert store.batches == [["req_1"]]  # it did not wait for company
    for n in (2, 3, 4):
        recorder.record(_entry(n))  # these arrive while req_1's insert runs
    await _turns()
    assert store.batches == [["req_1"]]
    store.release.set()
    await recorder.flush()
    assert store.batches == [["req_1"], ["req_2", "req_3", "req_4"]]
    await recorder.stop()


async def test_a_full_queue_spills_without_blocking_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sluice.audit.recorder as recorder_module

    synced_on: list[int] = []
    real_fsync = recorder_module.os.fsync

    def slow_fsync(fd: int) -> None:
        synced_on.append(threading.get_ident())
        time.sleep(0.2)  # a disk under load
        real_fsync(fd)

    monkeypatch.setattr(recorder_module.os, "fsync", slow_fsync)
    spill = tmp_path / "spill.jsonl"
    recorder = RequestRecorder(_SlowStore(), queue_size=1, spill_path=spill)  # type: ignore[arg-type]
    started = time.perf_counter()
    for n in range(3):
        recorder.record(_entry(n))  # the writer is not running: 2 of 3 overflow
    assert time.perf_counter() - started < 0.1  # record() returned before any fsync finished
    assert recorder.spilled == 2
    await recorder.spilled_to_disk()
    assert synced_on and threading.get_ident() not in synced_on  # the fsync ran in a worker thread
    assert spill.read_bytes().count(b"\n") == 2
