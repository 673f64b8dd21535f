from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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
    assert recorder.spilled == 15 and spill.exists()
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
