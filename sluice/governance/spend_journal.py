"""The local journal of settlements the store could not take.

While the store is down a settlement is appended here (JSON lines, fsynced) before its answer
reaches the caller, and replayed into the ledger when the store is back; the ledger skips a
request id it already holds, so a replay never counts twice. A settlement that cannot be written
here either (a full disk) is not durable anywhere: the caller of `append` must refuse the answer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import datetime
from pathlib import Path

import orjson

from sluice.storage.records import SpendRow

log = logging.getLogger("sluice.ledger")


class SpendJournal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pending: dict[str, SpendRow] = {}
        self._load()

    @property
    def pending(self) -> list[SpendRow]:
        """Settlements journalled and not yet known to be in the ledger."""
        return list(self._pending.values())

    def append(self, rows: list[SpendRow]) -> None:
        """Makes the rows durable on local disk; raises OSError (ENOSPC, EIO...) when it cannot, and
        then leaves the file as it was, so a torn line never glues itself to the next record."""
        if not rows:
            return
        data = b"".join(orjson.dumps(dataclasses.asdict(row)) + b"\n" for row in rows)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    log.exception("spend journal %s: could not cut back a partial write", self.path)
                raise
        finally:
            os.close(fd)
        for row in rows:
            self._pending[row.request_id] = row

    def forget(self, request_ids: set[str]) -> None:
        """The rows are in the ledger now: drop them from the journal."""
        for request_id in request_ids:
            self._pending.pop(request_id, None)
        if not self._pending:
            self.path.unlink(missing_ok=True)
            return
        # Some rows arrived during the replay: keep only those, atomically. Should this fail (a
        # full disk), the old file stays, and replaying its rows again is harmless.
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(b"".join(orjson.dumps(dataclasses.asdict(r)) + b"\n" for r in self._pending.values()))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError:
            log.warning("spend journal %s: could not compact it; its replayed rows stay until next time", self.path)
            tmp.unlink(missing_ok=True)

    def _load(self) -> None:
        if not self.path.exists():
            return
        for number, line in enumerate(self.path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
                raw["ts"] = datetime.fromisoformat(raw["ts"])
                row = SpendRow(**raw)
            except (ValueError, TypeError, KeyError):
                # Only a write that never completed (and whose answer was refused) can look like this.
                log.error("spend journal %s: line %d is unreadable and skipped", self.path, number)
                continue
            self._pending[row.request_id] = row
        if self._pending:
            log.warning("spend journal %s: %d settlement(s) wait for the store", self.path, len(self._pending))
