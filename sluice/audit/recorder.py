"""Gets completed request records into the store off the hot path.

`record()` never blocks and never awaits. Records go through a bounded queue to a batching
writer; when the queue is full or the store is down, records are appended to a spill file
(JSON lines) instead of being dropped, and the spill is replayed on the next start. A graceful
shutdown drains the queue before returning.
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
        linger_s: float = 0.05,
    ) -> None:
        self._store = store
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._spill_path = Path(spill_path)
        self._task: asyncio.Task[None] | None = None
        self.recorded = 0
        self.written = 0
        self.spilled = 0

    async def start(self) -> None:
        await self.replay_spill()
        self._task = spawn(self._writer(), name="request-log-writer")

    def record(self, entry: RequestLogEntry) -> None:
        self.recorded += 1
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self._spill([entry], reason="queue full")

    async def stop(self) -> None:
        if self._task is None:
            return
        await self._queue.put(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
        except TimeoutError:
            await cancel(self._task)
            self._spill(self._drain_nowait(), reason="shutdown timeout")
        self._task = None

    async def flush(self) -> None:
        """Wait until everything recorded so far is in the store (tests and shutdown)."""
        await self._queue.join()

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
                if self._queue.qsize() < self._batch_size:
                    # Let a few more records arrive: one insert of many costs far less than many.
                    await asyncio.sleep(self._linger_s)
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
        self._spill(batch, reason="store unavailable")

    def _spill(self, entries: list[RequestLogEntry], *, reason: str) -> None:
        if not entries:
            return
        self.spilled += len(entries)
        log.warning("request log: %d record(s) spilled to %s (%s)", len(entries), self._spill_path, reason)
        with self._spill_path.open("ab") as fh:
            for e in entries:
                fh.write(orjson.dumps(dataclasses.asdict(e)) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

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
