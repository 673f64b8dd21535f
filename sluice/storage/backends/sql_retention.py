"""RetentionStore over the SQL store's engine and tables (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update

from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_tables import audit_log, request_log


class SqlRetention:
    def __init__(self, store: SqlStore) -> None:
        self._engine = store.engine

    async def replace_audit_data(self, changes: Sequence[tuple[int, str, dict[str, Any]]]) -> int:
        changed = 0
        async with self._engine.begin() as conn:
            for seq, mac, data in changes:
                # Guarded by the MAC: a record that is not the one read is never rewritten.
                query = update(audit_log).where(audit_log.c.seq == seq, audit_log.c.mac == mac).values(data=data)
                changed += int((await conn.execute(query)).rowcount or 0)
        return changed

    async def delete_requests_before(self, before: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(request_log.delete().where(request_log.c.ts < before))
        return int(result.rowcount or 0)
