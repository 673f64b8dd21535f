"""Group commit for the spend ledger: settlements that arrive together share one transaction, and
each waits until its own row is durable."""

from __future__ import annotations

import asyncio
import logging

from sluice.core.tasks import spawn
from sluice.storage.ports import SpendLedger
from sluice.storage.records import SpendRow

log = logging.getLogger("sluice.ledger")


class LedgerWriter:
    def __init__(
        self, ledger: SpendLedger, *, max_batch: int = 500, linger_s: float = 0.05, commit_delay_s: float = 0.002
    ) -> None:
        self._ledger = ledger
        self._max_batch = max_batch
        self._linger_s = linger_s
        # A commit costs far more than a row: a waited settlement gives others 2 ms to join it.
        self._commit_delay_s = commit_delay_s
        self._pending: list[tuple[SpendRow, asyncio.Future[None] | None]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._lingering: asyncio.Task[None] | None = None

    async def write(self, row: SpendRow) -> None:
        """Returns once the row is committed; raises if it could not be."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(row, future)
        await future

    def write_later(self, row: SpendRow) -> None:
        """Same, for settlements nobody waits for (keys without limits): they wait a moment for
        company, so a busy gateway writes them in few transactions."""
        self._pending.append((row, None))
        if (self._lingering is None or self._lingering.done()) and (self._flushing is None or self._flushing.done()):
            self._lingering = spawn(self._linger(), name="ledger-linger")

    def _enqueue(self, row: SpendRow, future: asyncio.Future[None] | None) -> None:
        self._pending.append((row, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = spawn(self._flush(self._commit_delay_s), name="ledger-flush")

    async def _linger(self) -> None:
        await asyncio.sleep(self._linger_s)
        await self._flush()

    async def _flush(self, delay: float = 0.0) -> None:
        if delay and len(self._pending) < self._max_batch:
            await asyncio.sleep(delay)
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            error: BaseException | None = None
            try:
                await self._ledger.record_spend([row for row, _ in batch])
            except Exception as exc:
                log.exception("spend ledger write failed for %d settlement(s)", len(batch))
                error = exc
            for _, future in batch:
                if future is not None and not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)

    async def drain(self) -> None:
        for task in (self._lingering, self._flushing):
            if task is not None and not task.done():
                await asyncio.shield(task)
        if self._pending:
            await self._flush()
