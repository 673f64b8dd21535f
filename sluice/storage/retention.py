"""The store port retention needs: rewriting the data of sealed audit records (a tombstone keeps
their MAC valid, see audit/chain.py), deleting old request-log rows and blanking one person's
identifiers in the log; the session ledger, a sum of the log, follows both."""

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
        """Deletes request-log rows older than `before`, and their part of the session ledger
        (a session is summed again from the rows it keeps, or deleted with its last); returns how
        many log rows."""
        ...

    async def erase_identifiers(self, keys: set[str], end_user: str | None) -> tuple[int, int]:
        """Blanks the person's identifiers (the end-user id the client sent, the working
        directory) in the request log and the session ledger, for the rows of `keys` and the rows
        naming `end_user`. Returns (request-log rows, sessions) changed."""
        ...
