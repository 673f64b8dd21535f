"""Appends sealed records to the audit log, one writer at a time in this process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sluice.audit.chain import make_record
from sluice.settings import AuditConfig
from sluice.storage.ports import AuditStore
from sluice.storage.records import AuditRecord


def plain(value: Any) -> Any:
    """The value with floats written as text, the one JSON type without a canonical form."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class AuditLog:
    def __init__(self, config: AuditConfig, store: AuditStore) -> None:
        self._store = store
        self._enabled = config.enabled
        self._key_id = config.key_id
        self._key = config.keys().get(config.key_id, b"")
        self._lock = asyncio.Lock()
        self._last: AuditRecord | None = None
        self._loaded = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    async def append(self, kind: str, actor: str, data: dict[str, Any]) -> AuditRecord | None:
        """Seals and stores one record; returns once it is durable. Does nothing when no audit key
        is configured."""
        if not self._enabled:
            return None
        async with self._lock:
            if not self._loaded:
                self._last, self._loaded = await self._store.last_audit(), True
            record = make_record(self._key, self._key_id, self._last, datetime.now(UTC), kind, actor, plain(data))
            try:
                await self._store.append_audit([record])
            except Exception:
                self._loaded = False  # another writer may have moved the head: read it again next time
                raise
            self._last = record
            return record
