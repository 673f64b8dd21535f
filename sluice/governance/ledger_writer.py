"""Group commit for the spend ledger: a settlement that finds the writer idle is committed at once
(nothing waits for company), and the ones that arrive while a commit runs share the next one.
Each waited settlement returns only once its own row is durable.

Settlements nobody waits for (`write_later`: keys without limits) linger instead: they are
committed with the next waited one, or `linger_s` after the first of them, whichever comes first.
A commit costs about as much whatever rows it holds (WAL frames, the B-tree pages it dirties), so
a busy gateway without limits commits a few dozen times a second instead of once or twice a
request. What a crash can lose grows by at most the linger: those rows were in memory only either way.

Durable means in the store, or, while the store is down, in the local spend journal (fsynced),
from which the writer replays it into the store as soon as the store answers again, and always
before counters are rebuilt from the ledger. A settlement that is durable in neither raises
`SpendNotDurable`: the engine then refuses the answer instead of serving it unbilled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from sluice.core.tasks import cancel, spawn
from sluice.governance.spend_journal import SpendJournal
from sluice.storage.ports import SpendLedger
from sluice.storage.records import SpendRow

log = logging.getLogger("sluice.ledger")


class SpendNotDurable(Exception):
    """Neither the store nor the local journal could take a settlement."""


class LedgerWriter:
    def __init__(
        self,
        ledger: SpendLedger,
        *,
        journal: SpendJournal | None = None,
        max_batch: int = 500,
        retry_s: float = 1.0,
        linger_s: float = 0.0,
    ) -> None:
        self._ledger = ledger
        self._journal = journal
        self._max_batch = max_batch
        # While the store is down, settlements go straight to the journal, and the store is tried
        # again this often (by the replayer), not by every settlement.
        self._retry_s = retry_s
        self._store_down_at: float | None = None
        self._pending: list[tuple[SpendRow, asyncio.Future[None] | None]] = []
        self._waited = 0  # rows in _pending that somebody awaits
        self._linger_s = linger_s
        self._lingering: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._replaying: asyncio.Task[None] | None = None
        self._replay_lock = asyncio.Lock()

    @property
    def journalled(self) -> int:
        """Settlements waiting in the journal for the store."""
        return len(self._journal.pending) if self._journal else 0

    async def start(self) -> None:
        """Replays what an earlier run journalled; keeps trying in the background if the store is down."""
        if self._journal is None or not self._journal.pending:
            return
        try:
            await self.replay()
        except Exception:
            log.warning("spend journal: the store is not reachable yet; replay continues in the background")
            self._schedule_replay()

    async def write(self, row: SpendRow) -> None:
        """Returns once the row is durable; raises SpendNotDurable if it could not be made so."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(row, future)
        await future

    def write_later(self, row: SpendRow) -> None:
        """Same, for settlements nobody waits for (keys without limits): they go in the same
        commits as the waited ones."""
        self._enqueue(row, None)

    async def spend_totals(self, scope: str, scope_id: str, start: datetime, end: datetime) -> tuple[int, int, int]:
        """The ledger's totals, with every lingering settlement committed and every journalled one
        replayed into it first, so a counter rebuilt from them holds all spend so far, the
        outage's too. Raises while the store is down."""
        if self._pending:
            await self.flush()
        if self._journal is not None and self._journal.pending:
            await self.replay()
        return await self._ledger.spend_totals(scope, scope_id, start, end)

    async def replay(self) -> None:
        """Moves journalled settlements into the store (idempotent by request id); raises if it is down."""
        if self._journal is None:
            return
        async with self._replay_lock:
            rows = self._journal.pending
            for i in range(0, len(rows), self._max_batch):
                batch = rows[i : i + self._max_batch]
                await self._ledger.record_spend(batch)
                self._journal.forget({row.request_id for row in batch})
            if rows:
                self._store_down_at = None
                log.info("spend journal: replayed %d settlement(s) into the ledger", len(rows))

    def _enqueue(self, row: SpendRow, future: asyncio.Future[None] | None) -> None:
        self._pending.append((row, future))
        if future is not None:
            self._waited += 1
        if self._flushing is not None and not self._flushing.done():
            return  # the running flush takes it in its next round
        if future is None and self._linger_s > 0:
            self._linger()
            return
        self._start_flush()

    def _linger(self) -> None:
        if self._lingering is None:
            self._lingering = asyncio.get_running_loop().call_later(self._linger_s, self._start_flush)

    def _stop_lingering(self) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None

    def _start_flush(self) -> None:
        self._stop_lingering()
        if self._flushing is None or self._flushing.done():
            # The flush starts on the loop's next turn, so settlements made in this turn join it;
            # those made while it commits are taken by its next round.
            self._flushing = spawn(self._flush(), name="ledger-flush")

    async def flush(self) -> None:
        """Commits (or journals) everything pending, lingering settlements too."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        while self._pending:
            self._stop_lingering()
            await self._commit_round()

    async def _flush(self) -> None:
        """Commit rounds until nothing is pending, or only settlements nobody waits for (they linger)."""
        await self._commit_round()
        while self._pending:
            if self._waited == 0 and self._linger_s > 0:
                self._linger()
                return
            await self._commit_round()

    async def _commit_round(self) -> None:
        self._stop_lingering()
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        if not batch:
            return
        self._waited -= sum(1 for _, future in batch if future is not None)
        error = await self._persist([row for row, _ in batch])
        for _, future in batch:
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    async def _persist(self, rows: list[SpendRow]) -> BaseException | None:
        """Store, else journal. Returns the error that left the rows durable nowhere."""
        if not self._store_recently_down():
            try:
                await self._ledger.record_spend(rows)
                return None
            except Exception as exc:
                if self._journal is None:
                    log.exception("spend ledger write failed for %d settlement(s)", len(rows))
                    return exc
                log.warning("spend ledger write failed for %d settlement(s) (%s); journalling them", len(rows), exc)
                self._store_down_at = time.monotonic()
        assert self._journal is not None
        try:
            # An fsync blocks for milliseconds (seconds on a sick disk): not on the event loop.
            await asyncio.to_thread(self._journal.append, rows)
        except OSError as exc:
            log.error(
                "spend journal %s cannot take %d settlement(s) (%s): their answers are refused",
                self._journal.path,
                len(rows),
                exc,
            )
            return SpendNotDurable(f"settlement neither in the store nor in the journal: {exc}")
        self._schedule_replay()
        return None

    def _store_recently_down(self) -> bool:
        return (
            self._journal is not None
            and self._store_down_at is not None
            and time.monotonic() - self._store_down_at < self._retry_s
        )

    def _schedule_replay(self) -> None:
        if self._replaying is None or self._replaying.done():
            self._replaying = spawn(self._replay_until_done(), name="ledger-replay")

    async def _replay_until_done(self) -> None:
        while self._journal is not None and self._journal.pending:
            await asyncio.sleep(self._retry_s)
            try:
                await self.replay()
            except Exception as exc:
                self._store_down_at = time.monotonic()
                log.warning("spend journal: store still unavailable (%s); %d waiting", exc, self.journalled)

    async def drain(self) -> None:
        await self.flush()
        try:
            await self.replay()
        except Exception:
            log.warning("spend journal: %d settlement(s) stay journalled for the next start", self.journalled)
        await cancel(self._replaying)
