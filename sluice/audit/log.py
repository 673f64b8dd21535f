"""Appends sealed records to the audit log. A record that finds the log idle is sealed and stored
at once; those that arrive while a transaction runs are sealed in order and stored together in
the next one (group commit, never a fixed wait). Each caller waits until its own record is durable."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sluice.audit import checkpoints
from sluice.audit.chain import make_record, seal_anchor
from sluice.core.tasks import spawn
from sluice.settings import AuditConfig
from sluice.storage.ports import AuditStore
from sluice.storage.records import AuditRecord

log = logging.getLogger("sluice.audit")


# Values plain() leaves as they are, by exact type (a subclass, such as an IntEnum, takes the general path).
_LEAVES = frozenset((str, int, bool, type(None)))


def plain(value: Any) -> Any:
    """The value with floats written as text, the one JSON type without a canonical form (dict keys
    as text, tuples as lists). The exact dict and list, and their members that are leaves, are done
    inline without a call per member: a request's record (about 25 fields, 4 nested) in 3.1 µs
    instead of 7.5; the result is the same, value for value (tests/unit/audit/test_plain.py)."""
    kind = type(value)
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in _LEAVES else plain(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _LEAVES else plain(v) for v in value]
    if kind in _LEAVES:
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


_Pending = tuple[str, str, dict[str, Any], "asyncio.Future[AuditRecord]"]


class AuditLog:
    def __init__(self, config: AuditConfig, store: AuditStore, *, max_batch: int = 500) -> None:
        self._store = store
        self._enabled = config.enabled
        self.refuse_unrecorded = config.refuse_unrecorded
        self._key_id = config.key_id
        self._capture = config.capture_content
        self._key = config.keys().get(config.key_id, b"")
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._flushing: asyncio.Task[None] | None = None
        self._last: AuditRecord | None = None
        self._loaded = False
        # Checkpoints need their paths resolved for the store (checkpoints.with_defaults): the
        # gateway does that, so tools that only append a record (the CLI) sign nothing.
        self._signer = checkpoints.signing_key(config) if self._enabled else None
        self._checkpoint_path = Path(config.checkpoint_path) if config.checkpoint_path else None
        self._every_records = config.checkpoint_every_records
        self._every_seconds = config.checkpoint_every_seconds
        self._checkpointed_seq = 0
        self._checkpointed_at = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def captures(self, key_id: str, team_id: str | None) -> bool:
        """Whether this key's prompts and answers are recorded (redacted)."""
        return self._enabled and (key_id in self._capture.virtual_keys or (team_id in self._capture.teams))

    @property
    def capture_limit(self) -> int:
        return self._capture.max_bytes

    async def append(self, kind: str, actor: str, data: dict[str, Any]) -> AuditRecord | None:
        """Seals and stores one record; returns once it is durable, raises if it could not be.
        Does nothing when no audit key is configured."""
        future = self.submit(kind, actor, data)
        return None if future is None else await future

    def submit(self, kind: str, actor: str, data: dict[str, Any]) -> asyncio.Future[AuditRecord] | None:
        """`append` without waiting: the future resolves once the record is durable (or fails).
        A caller that starts another write before awaiting it (the request's ledger row) gets
        both into one commit. None when no audit key is configured."""
        if not self._enabled:
            return None
        future: asyncio.Future[AuditRecord] = asyncio.get_running_loop().create_future()
        self._pending.append((kind, actor, plain(data), future))
        if self._flushing is None or self._flushing.done():
            self._flushing = spawn(self._flush(), name="audit-flush")
        return future

    async def append_all(self, kind: str, actor: str, items: list[dict[str, Any]]) -> list[AuditRecord]:
        """Seals and stores several records of one kind, in order (one batch when nothing else is
        pending), without a task per record; returns once all are durable, raises if any was not."""
        if not self._enabled or not items:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[AuditRecord]] = []
        for data in items:
            future: asyncio.Future[AuditRecord] = loop.create_future()
            self._pending.append((kind, actor, plain(data), future))
            futures.append(future)
        if self._flushing is None or self._flushing.done():
            self._flushing = spawn(self._flush(), name="audit-flush")
        return list(await asyncio.gather(*futures))  # futures, not coroutines: no task is made

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                records, last = await self._seal_and_store(batch)
            except Exception as exc:
                log.exception("audit log write failed for %d record(s)", len(batch))
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._last = last
            for record, (*_, future) in zip(records, batch, strict=True):
                if not future.done():
                    future.set_result(record)
            await self._maybe_checkpoint(force=False)

    async def _seal_and_store(self, batch: list[_Pending]) -> tuple[list[AuditRecord], AuditRecord | None]:
        """Seals the batch after the chain head and stores it. When another process sharing the
        store took the next sequence number first, the insert fails on the key: read the new head,
        seal again, retry. The chain stays one line, whoever writes."""
        for attempt in range(5):
            if not self._loaded:
                self._last, self._loaded = await self._store.last_audit(), True
            records, last = [], self._last
            for kind, actor, data, _ in batch:
                # `data` went through plain(): it holds no float, and kind and actor are text.
                last = make_record(
                    self._key, self._key_id, last, datetime.now(UTC), kind, actor, data, floats_checked=True
                )
                records.append(last)
            try:
                await self._store.append_audit(records)
                return records, last
            except Exception:
                self._loaded = False
                if attempt == 4:
                    raise
                await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _maybe_checkpoint(self, *, force: bool) -> None:
        if self._signer is None or self._checkpoint_path is None or self._last is None:
            return
        if self._last.seq == self._checkpointed_seq:
            return
        due = self._last.seq - self._checkpointed_seq >= self._every_records or (
            time.monotonic() - self._checkpointed_at >= self._every_seconds
        )
        if force or due:
            head = self._last
            try:
                # Appended and fsynced in a worker thread: an fsync must not stall the event loop.
                await asyncio.to_thread(checkpoints.append, self._checkpoint_path, checkpoints.sign(self._signer, head))
            except OSError:
                log.exception("audit checkpoint could not be written to %s", self._checkpoint_path)
                return
            self._checkpointed_seq, self._checkpointed_at = head.seq, time.monotonic()

    async def prune(self, keep_days: int, actor: str) -> int:
        """Removes records older than `keep_days` behind a sealed anchor (the rest still
        verifies), and records the pruning itself. Returns how many records went."""
        if not self._enabled:
            return 0

        def anchor_for(last: AuditRecord) -> tuple[dict[str, Any], str]:
            fields = {"seq": last.seq, "mac": last.mac, "ts": last.ts.isoformat(), "key_id": self._key_id}
            return fields, seal_anchor(self._key, fields)

        removed = await self._store.prune_audit(datetime.now(UTC) - timedelta(days=keep_days), anchor_for)
        await self.append("data_access", actor, {"action": "audit_prune", "keep_days": keep_days, "records": removed})
        return removed

    async def retention_loop(self, keep_days: int) -> None:
        """Prunes once a day (the first time right after start)."""
        while True:
            try:
                removed = await self.prune(keep_days, "retention")
                if removed:
                    log.info("audit retention: pruned %d record(s) older than %d day(s)", removed, keep_days)
            except Exception:
                log.exception("audit retention failed")
            await asyncio.sleep(86_400)

    async def drain(self) -> None:
        if self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        await self._maybe_checkpoint(force=True)
