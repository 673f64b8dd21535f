"""The session ledger on SQL (tables `agent_session` and `agent_session_item`, migration 0013):
the upserts the request-log writer runs in the transaction that stores the requests, and the reads
behind the admin API, the CLI and the console.

Each upsert adds a batch's delta (sluice.sessions.ledger.fold) to the session's row with
operations that commute (sums, the earlier start, the later end, the facts of the newer request),
in SQL both SQLite (3.24+) and PostgreSQL run: `INSERT ... ON CONFLICT (...) DO UPDATE` with
`excluded`, where the right-hand sides read the row as it was. Two replicas adding to one session
at once serialise on its row; neither's delta is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.sessions.ledger import SessionDelta, fold, ledger_id
from sluice.storage.backends.sql_tables import agent_session, agent_session_item, request_log, virtual_keys
from sluice.storage.records import RequestLogEntry, SessionQuery

_SUMS = (
    "requests",
    "errors",
    "denied",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_pico",
)
_LATEST = ("end_user", "client", "client_version", "user_agent", "repo", "branch", "cwd")
_SESSION_COLUMNS = tuple(c.name for c in agent_session.columns)
_ITEM_COLUMNS = tuple(c.name for c in agent_session_item.columns)


def _marks(dialect: str, columns: Sequence[str]) -> str:
    """`?` (sqlite3), `$n` (asyncpg) or `:name` (SQLAlchemy's text(), for any other driver)."""
    if dialect == "sqlite":
        return ", ".join("?" for _ in columns)
    if dialect == "postgresql":
        return ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return ", ".join(f":{c}" for c in columns)


def session_upsert_sql(dialect: str) -> str:
    t = "agent_session"
    sets = [f"{c} = {t}.{c} + excluded.{c}" for c in _SUMS]
    sets.append(
        f"started_at = CASE WHEN excluded.started_at < {t}.started_at THEN excluded.started_at ELSE {t}.started_at END"
    )
    sets.append(f"ended_at = CASE WHEN excluded.ended_at > {t}.ended_at THEN excluded.ended_at ELSE {t}.ended_at END")
    sets += [
        f"{c} = CASE WHEN excluded.ended_at >= {t}.ended_at THEN COALESCE(excluded.{c}, {t}.{c})"
        f" ELSE COALESCE({t}.{c}, excluded.{c}) END"
        for c in _LATEST
    ]
    sets.append(f"team_id = COALESCE({t}.team_id, excluded.team_id)")
    columns = ", ".join(_SESSION_COLUMNS)
    marks = _marks(dialect, _SESSION_COLUMNS)
    return f"INSERT INTO {t} ({columns}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {', '.join(sets)}"


def item_upsert_sql(dialect: str) -> str:
    t = "agent_session_item"
    columns = ", ".join(_ITEM_COLUMNS)
    marks = _marks(dialect, _ITEM_COLUMNS)
    return (
        f"INSERT INTO {t} ({columns}) VALUES ({marks}) ON CONFLICT (session, kind, name) DO UPDATE SET "
        f"count = {t}.count + excluded.count, cost_pico = {t}.cost_pico + excluded.cost_pico"
    )


def session_rows(deltas: Sequence[SessionDelta], ts: Callable[[datetime], Any]) -> list[tuple[Any, ...]]:
    """The upsert's parameters, in `_SESSION_COLUMNS` order; `ts` binds a timestamp."""
    rows = []
    for d in deltas:
        values = {
            "id": d.id,
            "virtual_key_id": d.virtual_key_id,
            "session_id": d.session_id,
            "team_id": d.team_id,
            "end_user": d.end_user,
            "client": d.client,
            "client_version": d.client_version,
            "user_agent": d.user_agent,
            "repo": d.repo,
            "branch": d.branch,
            "cwd": d.cwd,
            "started_at": ts(d.started_at),
            "ended_at": ts(d.ended_at),
            **{name: getattr(d, name) for name in _SUMS},
        }
        rows.append(tuple(values[c] for c in _SESSION_COLUMNS))
    return rows


def item_rows(deltas: Sequence[SessionDelta]) -> list[tuple[Any, ...]]:
    return [(d.id, kind, name, count, cost) for d in deltas for (kind, name), (count, cost) in sorted(d.items.items())]


# -- reads --------------------------------------------------------------------------------------
def _where(q: SessionQuery) -> list[Any]:
    c = agent_session.c
    found: list[Any] = []
    if q.since is not None:
        found.append(c.ended_at >= q.since)
    if q.until is not None:
        found.append(c.started_at < q.until)
    if q.virtual_key_ids is not None:
        found.append(c.virtual_key_id.in_(q.virtual_key_ids))
    if q.team_ids is not None:
        found.append(c.team_id.in_(q.team_ids))
    if q.owner_user_id is not None:
        found.append(virtual_keys.c.user_id == q.owner_user_id)
    for column, value in ((c.client, q.client), (c.repo, q.repo), (c.branch, q.branch), (c.session_id, q.session_id)):
        if value is not None:
            found.append(column == value)
    if q.min_cost_pico is not None:
        found.append(c.cost_pico >= q.min_cost_pico)
    return found


def _row(r: Any, utc: Callable[[datetime | None], datetime | None]) -> dict[str, Any]:
    row = dict(r._mapping)
    row["started_at"], row["ended_at"] = utc(row["started_at"]), utc(row["ended_at"])
    return row


class SessionReads:
    def __init__(self, engine: AsyncEngine, utc: Callable[[datetime | None], datetime | None]) -> None:
        self.engine = engine
        self._utc = utc

    def _select(self, q: SessionQuery, *columns: Any) -> Any:
        stmt = select(*columns).select_from(
            agent_session.outerjoin(virtual_keys, virtual_keys.c.id == agent_session.c.virtual_key_id)
        )
        return stmt.where(*_where(q))

    async def page(self, q: SessionQuery) -> list[dict[str, Any]]:
        """A page of sessions, the most recently active first, each with its items."""
        c = agent_session.c
        stmt = self._select(q, agent_session, virtual_keys.c.user_id.label("owner_user_id"))
        stmt = stmt.order_by(c.ended_at.desc(), c.id).limit(q.limit).offset(q.offset)
        async with self.engine.connect() as conn:
            rows = [_row(r, self._utc) for r in (await conn.execute(stmt)).all()]
        items = await self.items([r["id"] for r in rows])
        for row in rows:
            row["items"] = items.get(row["id"], [])
        return rows

    async def get(self, ledger_id: str) -> dict[str, Any] | None:
        c = agent_session.c
        stmt = self._select(SessionQuery(), agent_session, virtual_keys.c.user_id.label("owner_user_id"))
        async with self.engine.connect() as conn:
            found = (await conn.execute(stmt.where(c.id == ledger_id))).first()
        if found is None:
            return None
        row = _row(found, self._utc)
        row["items"] = (await self.items([ledger_id])).get(ledger_id, [])
        return row

    async def items(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each session's models, tools and error kinds, most used first."""
        if not ids:
            return {}
        i = agent_session_item.c
        stmt = select(agent_session_item).where(i.session.in_(ids)).order_by(i.session, i.kind, i.count.desc(), i.name)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        found: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            found.setdefault(r.session, []).append(
                {"kind": r.kind, "name": r.name, "count": int(r[3]), "cost_pico": int(r.cost_pico)}
            )
        return found

    async def requests(self, virtual_key_id: str, session_id: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """The session's requests in the log, oldest first (the (session_id, ts) index)."""
        c = request_log.c
        stmt = (
            select(request_log)
            .where(c.session_id == session_id, c.virtual_key_id == virtual_key_id)
            .order_by(c.ts, c.request_id)
            .limit(limit)
            .offset(offset)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{**r._mapping, "ts": self._utc(r._mapping["ts"])} for r in rows]

    async def spend(self, group_by: Sequence[str], q: SessionQuery) -> list[dict[str, Any]]:
        """Cost, tokens, requests and sessions of the matching sessions grouped by any of repo,
        branch, client, team, key and user, largest cost first."""
        c = agent_session.c
        columns = {
            "repo": c.repo,
            "branch": c.branch,
            "client": c.client,
            "team": c.team_id,
            "key": c.virtual_key_id,
            "user": virtual_keys.c.user_id,
        }
        groups = [columns[g].label(g) for g in group_by]
        cost = func.coalesce(func.sum(c.cost_pico), 0).label("cost_pico")
        tokens = func.coalesce(func.sum(c.input_tokens + c.output_tokens), 0).label("tokens")
        stmt = self._select(
            q, *groups, cost, tokens, func.coalesce(func.sum(c.requests), 0).label("requests"), func.count()
        )
        stmt = stmt.group_by(*groups).order_by(cost.desc(), *groups).limit(q.limit).offset(q.offset)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        n = len(groups)
        return [
            {
                **{g: (None if r[i] is None else str(r[i])) for i, g in enumerate(group_by)},
                "cost_pico": int(r[n]),
                "tokens": int(r[n + 1]),
                "requests": int(r[n + 2]),
                "sessions": int(r[n + 3]),
            }
            for r in rows
        ]


# -- retention and erasure ---------------------------------------------------------------------
# The log's columns a session is summed from (sluice.sessions.ledger.SessionDelta.add).
_FOLDED = tuple(
    getattr(request_log.c, name)
    for name in (
        "request_id ts path surface status decision error_kind virtual_key_id team_id client session_id user_id "
        "requested_model model input_tokens output_tokens cache_read_tokens cache_write_tokens cost_pico "
        "latency_ms mcp_tools repo branch cwd"
    ).split()
)


def _logged(r: Any, utc: Callable[[datetime | None], datetime | None]) -> RequestLogEntry:
    m = r._mapping
    ts = utc(m["ts"])
    assert ts is not None
    return RequestLogEntry(
        request_id=m["request_id"], ts=ts, path=m["path"], surface=m["surface"], status=m["status"],
        decision=m["decision"], error_kind=m["error_kind"], virtual_key_id=m["virtual_key_id"],
        team_id=m["team_id"], client=m["client"] or "", session_id=m["session_id"], user_id=m["user_id"],
        requested_model=m["requested_model"], model=m["model"], input_tokens=m["input_tokens"] or 0,
        output_tokens=m["output_tokens"] or 0, cache_read_tokens=m["cache_read_tokens"] or 0,
        cache_write_tokens=m["cache_write_tokens"] or 0, cost_pico=m["cost_pico"] or 0,
        latency_ms=m["latency_ms"] or 0.0, mcp_tools=tuple(m["mcp_tools"] or ()), repo=m["repo"],
        branch=m["branch"], cwd=m["cwd"],
    )  # fmt: skip


async def resum_sessions(
    conn: Any, pairs: Iterable[tuple[str, str]], utc: Callable[[datetime | None], datetime | None]
) -> tuple[int, int]:
    """Sums the given sessions (virtual key, session id) again from what the log holds of them
    now, in the caller's transaction: after rows were deleted (retention) or blanked (erasure),
    each session is what `fold` makes of its remaining rows, and one with none left is deleted.
    Returns (sessions deleted, sessions summed again).

    The sessions' rows are locked first (PostgreSQL; SQLite's writer holds the whole file), in id
    order as the request-log writer locks them: a writer that added to one of them has committed
    by then, so its rows are read here, and one that adds later adds to the sum made here."""
    wanted = {ledger_id(key, session): (key, session) for key, session in pairs}
    removed = resummed = 0
    ids = sorted(wanted)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        c, r = agent_session.c, request_log.c
        await conn.execute(select(c.id).where(c.id.in_(chunk)).order_by(c.id).with_for_update())
        sessions = sorted({wanted[sid][1] for sid in chunk})
        rows = (await conn.execute(select(*_FOLDED).where(r.session_id.in_(sessions)))).all()
        mine = {wanted[sid] for sid in chunk}
        deltas = fold(e for e in (_logged(row, utc) for row in rows) if (e.virtual_key_id, e.session_id) in mine)
        await conn.execute(agent_session_item.delete().where(agent_session_item.c.session.in_(chunk)))
        removed += int((await conn.execute(agent_session.delete().where(c.id.in_(chunk)))).rowcount or 0)
        if deltas:
            values = [dict(zip(_SESSION_COLUMNS, row, strict=True)) for row in session_rows(deltas, lambda t: t)]
            await conn.execute(insert(agent_session), values)
            if items := item_rows(deltas):
                counted = [dict(zip(_ITEM_COLUMNS, item, strict=True)) for item in items]
                await conn.execute(insert(agent_session_item), counted)
            removed -= len(deltas)
            resummed += len(deltas)
    return max(removed, 0), resummed
