"""RetentionStore over the SQL store's engine and tables (SQLite and PostgreSQL).

The session ledger (`agent_session`, `agent_session_item`) is a sum of the request log, so it
follows the log: rows deleted by age take their part of each session with them (a session is
summed again from the rows it has left, or deleted with its last row), and one person's erasure
blanks the same identifiers in both."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, true, update

from sluice.storage.backends.sql import SqlStore, _utc
from sluice.storage.backends.sql_sessions import resum_sessions
from sluice.storage.backends.sql_tables import agent_session, agent_session_item, audit_log, request_log

_PAGE = 5_000  # request-log rows deleted per transaction


class SqlRetention:
    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._engine = store.engine

    def _writing(self) -> Any:
        # SQLite has one writer: take this process's turn rather than wait on the file's lock.
        return self._store.write_lock if self._store.is_sqlite else contextlib.nullcontext()

    async def replace_audit_data(self, changes: Sequence[tuple[int, str, dict[str, Any]]]) -> int:
        changed = 0
        async with self._engine.begin() as conn:
            for seq, mac, data in changes:
                # Guarded by the MAC: a record that is not the one read is never rewritten.
                query = update(audit_log).where(audit_log.c.seq == seq, audit_log.c.mac == mac).values(data=data)
                changed += int((await conn.execute(query)).rowcount or 0)
        return changed

    async def delete_requests_before(self, before: datetime) -> int:
        """Deletes the log's rows older than `before`, a page at a time, each page in one
        transaction with its sessions summed again; then the sessions that ended before it (a
        ledger kept before retention reached it may hold sessions whose rows are long gone)."""
        removed = 0
        r = request_log.c
        oldest = select(r.request_id).where(r.ts < before).order_by(r.ts).limit(_PAGE)
        while True:
            async with self._writing(), self._engine.begin() as conn:
                # The delete comes first: on SQLite it takes the write lock before anything is read.
                query = request_log.delete().where(r.request_id.in_(oldest)).returning(r.virtual_key_id, r.session_id)
                gone = (await conn.execute(query)).all()
                pairs = {(key, session) for key, session in gone if key and session}
                await resum_sessions(conn, pairs, _utc)
            removed += len(gone)
            if len(gone) < _PAGE:
                break
        async with self._writing(), self._engine.begin() as conn:
            ended = select(agent_session.c.id).where(agent_session.c.ended_at < before)
            await conn.execute(agent_session_item.delete().where(agent_session_item.c.session.in_(ended)))
            await conn.execute(agent_session.delete().where(agent_session.c.ended_at < before))
        return removed

    async def erase_identifiers(self, keys: set[str], end_user: str | None) -> tuple[int, int]:
        """Blanks who the client said its user was (`user_id`, the ledger's `end_user`) and where
        it worked (`cwd`, a path that often names them) in every request-log row and session of
        `keys`, and in every row that names `end_user`; those rows' sessions of other keys are
        summed again from the blanked log. Returns (log rows, sessions) changed."""
        r, s = request_log.c, agent_session.c
        rows = sessions = 0
        async with self._writing(), self._engine.begin() as conn:
            if keys:
                ordered = sorted(keys)
                blank = update(request_log).where(r.virtual_key_id.in_(ordered)).values(user_id=None, cwd=None)
                rows += int((await conn.execute(blank)).rowcount or 0)
                ledger = update(agent_session).where(s.virtual_key_id.in_(ordered)).values(end_user=None, cwd=None)
                sessions += int((await conn.execute(ledger)).rowcount or 0)
            if end_user is not None:
                named = or_(r.virtual_key_id.is_(None), r.virtual_key_id.not_in(sorted(keys))) if keys else true()
                theirs = select(r.virtual_key_id, r.session_id).where(r.user_id == end_user, named).distinct()
                pairs = {(key, session) for key, session in (await conn.execute(theirs)).all() if key and session}
                blank = update(request_log).where(r.user_id == end_user).values(user_id=None, cwd=None)
                rows += int((await conn.execute(blank)).rowcount or 0)
                orphans = update(agent_session).where(s.end_user == end_user).values(end_user=None, cwd=None)
                sessions += int((await conn.execute(orphans)).rowcount or 0)
                sessions += (await resum_sessions(conn, pairs, _utc))[1]
        return rows, sessions
