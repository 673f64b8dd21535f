"""The store port retention needs: rewriting the data of sealed audit records (a tombstone keeps
their MAC valid, see audit/chain.py) and deleting old request-log rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol


class RetentionStore(Protocol):
    async def replace_audit_data(self, changes: Sequence[tuple[int, str, dict[str, Any]]]) -> int:
        """(seq, mac, new data) for each record; a record whose MAC is no longer `mac` is left
        alone. Returns how many were changed."""
        ...

    async def delete_requests_before(self, before: datetime) -> int:
        """Deletes request-log rows older than `before`; returns how many."""
        ...
