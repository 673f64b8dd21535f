"""Gets completed request records into the store off the hot path.

`record()` never blocks and never awaits. Records go through a bounded queue to a writer that
inserts what it finds queued (one record when the gateway is idle, many when it is busy: those
that arrive during an insert wait for the next one). Nobody awaits these rows: the SQLite store
lets them wait for company (`store.linger_ms`, sluice.storage.backends.sqlite_writer). When the queue
is full or the store is down, records are appended to a spill file (JSON lines, fsynced in a
worker thread, never on the event loop) instead of being dropped, and the spill is replayed on
the next start. A graceful shutdown drains the queue and the spill before returning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from sluice.core.tasks import cancel, spawn
from sluice.storage.ports import RequestLogStore
from sluice.storage.records import RequestLogEntry

log = logging.getLogger("sluice.requestlog")
_STOP = object()


class RequestRecorder:
    def __init__(
        self,
        store: RequestLogStore,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        spill_path: str | Path,
    ) -> None:
        self._store = store
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._spill_path = Path(spill_path)
        self._task: asyncio.Task[None] | None = None
        # Records waiting for the spill file, and the task writing them there (in a thread).
        self._to_spill: list[tuple[RequestLogEntry, str]] = []
        self._spilling: asyncio.Task[None] | None = None
        self.recorded = 0
        self.written = 0
        self.spilled = 0

    async def start(self) -> None:
        await self.spilled_to_disk()
        await self.replay_spill()
        self._task = spawn(self._writer(), name="request-log-writer")

    def record(self, entry: RequestLogEntry) -> None:
        self.recorded += 1
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self._spill_later([entry], reason="queue full")

    async def stop(self) -> None:
        if self._task is None:
            return
        await self._queue.put(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
        except TimeoutError:
            await cancel(self._task)
            self._spill_later(self._drain_nowait(), reason="shutdown timeout")
        self._task = None
        await self.spilled_to_disk()
        if self._to_spill:
            log.error("request log: %d record(s) could be neither stored nor spilled; lost", len(self._to_spill))

    async def flush(self) -> None:
        """Wait until everything recorded so far is in the store, or spilled to disk (tests and shutdown)."""
        await self._queue.join()
        await self.spilled_to_disk()

    async def spilled_to_disk(self) -> None:
        """Wait until every record handed to the spill is in the spill file (fsynced)."""
        while self._spilling is not None and not self._spilling.done():
            await asyncio.shield(self._spilling)

    def _drain_nowait(self) -> list[RequestLogEntry]:
        items = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            self._queue.task_done()
            if item is not _STOP:
                items.append(item)
        return items

    async def _writer(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            batch: list[RequestLogEntry] = []
            if first is _STOP:
                stopping = True
            else:
                batch.append(first)
            # No waiting for company: what is queued now goes in; what comes during the insert, next.
            while len(batch) < self._batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)
            await self._write(batch)
            for _ in range(len(batch) + (1 if stopping else 0)):
                self._queue.task_done()

    async def _write(self, batch: list[RequestLogEntry]) -> None:
        if not batch:
            return
        for attempt in range(3):
            try:
                await self._store.insert_requests(batch)
                self.written += len(batch)
                return
            except Exception:
                log.exception("request log write failed (attempt %d of 3)", attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        self._spill_later(batch, reason="store unavailable")
        await self.spilled_to_disk()

    def _spill_later(self, entries: list[RequestLogEntry], *, reason: str) -> None:
        """Hands records to the spill writer; never blocks: the file is written and fsynced in a
        worker thread (an fsync takes milliseconds, seconds on a busy disk, and the queue is full
        exactly when the gateway is busiest)."""
        if not entries:
            return
        self.spilled += len(entries)
        self._to_spill.extend((e, reason) for e in entries)
        if self._spilling is None or self._spilling.done():
            self._spilling = spawn(self._spill_writer(), name="request-log-spill")

    async def _spill_writer(self) -> None:
        while self._to_spill:
            batch, self._to_spill = self._to_spill, []
            reasons = sorted({reason for _, reason in batch})
            log.warning(
                "request log: %d record(s) spilled to %s (%s)", len(batch), self._spill_path, ", ".join(reasons)
            )
            lines = b"".join(orjson.dumps(dataclasses.asdict(e)) + b"\n" for e, _ in batch)
            try:
                await asyncio.to_thread(_append_synced, self._spill_path, lines)
            except OSError:
                # Kept in memory for the next spill (or the shutdown's), not dropped.
                self._to_spill[:0] = batch
                log.exception("request log: %d record(s) could not be spilled to %s", len(batch), self._spill_path)
                return

    async def replay_spill(self) -> None:
        if not self._spill_path.exists():
            return
        entries = []
        for line in self._spill_path.read_bytes().splitlines():
            if line.strip():
                raw = orjson.loads(line)
                raw["ts"] = datetime.fromisoformat(raw["ts"])
                entries.append(RequestLogEntry(**raw))
        for i in range(0, len(entries), self._batch_size):
            await self._store.insert_requests(entries[i : i + self._batch_size])
        self._spill_path.unlink()
        log.info("request log: replayed %d spilled record(s)", len(entries))


def _append_synced(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
