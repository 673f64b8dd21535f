"""Read-only queries behind the console's pages, over the SQL store's engine: the request log
through its indexes (ts, and key/team/model/session/decision/status with ts), newest first, a page
at a time, never counting the whole table; keys, configuration objects and budgets the same way.
Spend figures come from the roll-up (console_rollup.py), which is the only thing written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select

from sluice.storage.backends.console_rollup import (
    DIMS,
    MEASURES,
    SCOPED_DIMS,
    RollupReads,
    Totals,
    Within,
    _utc,
    day_start,
    hours_ago,
    month_start,
)
from sluice.storage.backends.sql import _key_from_row
from sluice.storage.backends.sql_sessions import SessionReads
from sluice.storage.backends.sql_tables import (
    audit_log,
    config_objects,
    meta,
    request_log,
    spend_ledger,
    virtual_keys,
)
from sluice.storage.records import ConfigObject, SessionQuery, VirtualKey

# The audit kinds of a finished request (sluice/engine/record.py request_kind).
REQUEST_AUDIT_KINDS = ("request", "denied", "auth_failure")
_AUDIT_BATCH = 2000


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class KeyVisibility:
    """Which keys a caller may see, as RBAC's grants say: everything, or the union of the teams
    they lead and their own keys (the console re-checks each row with rbac.decide too)."""

    everything: bool = False
    teams: tuple[str, ...] = ()
    user_id: str | None = None

    def clause(self) -> list[Any]:
        if self.everything:
            return []
        k = virtual_keys.c
        parts: list[Any] = []
        if self.teams:
            parts.append(k.team_id.in_(self.teams))
        if self.user_id is not None:
            parts.append(k.user_id == self.user_id)
        return [or_(*parts)] if parts else [false()]


@dataclass(frozen=True, slots=True)
class LogFilter:
    """The request log page's filters (None: any). `key_ids`/`team_ids` also carry RBAC's
    restriction of what the caller may see."""

    key_ids: tuple[str, ...] | None = None
    team_ids: tuple[str, ...] | None = None
    model: str | None = None
    status: int | None = None
    decision: str | None = None
    session_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class ConsoleQueries(RollupReads):
    """Everything the console reads: the roll-up's figures and the queries below."""

    async def agents_of(self, key_ids: list[str], since: datetime) -> dict[str, list[tuple[str, int]]]:
        """The agents (client names) each key was used from since `since`, most requests first."""
        if not key_ids:
            return {}
        c = request_log.c
        stmt = (
            select(c.virtual_key_id, c.client, func.count())
            .where(c.virtual_key_id.in_(key_ids), c.ts >= since)
            .group_by(c.virtual_key_id, c.client)
            .order_by(func.count().desc())
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        found: dict[str, list[tuple[str, int]]] = {}
        for key_id, client, count in rows:
            found.setdefault(str(key_id), []).append((str(client or "unknown"), int(count)))
        return found

    # -- the request log ------------------------------------------------------------------------
    async def requests(
        self, flt: LogFilter, limit: int = 50, before: tuple[datetime, str] | None = None
    ) -> list[dict[str, Any]]:
        """A page of log entries, newest first; `before` is the (ts, request_id) the previous page
        ended at (keyset paging: page 1,000 costs what page 1 does)."""
        c = request_log.c
        stmt = select(request_log).where(*_filters(flt))
        if before is not None:
            ts, rid = before
            stmt = stmt.where(or_(c.ts < ts, and_(c.ts == ts, c.request_id < rid)))
        stmt = stmt.order_by(c.ts.desc(), c.request_id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{**r._mapping, "ts": _utc(r._mapping["ts"])} for r in rows]

    async def requests_after(
        self, flt: LogFilter, after: tuple[datetime, str], limit: int = 100
    ) -> list[dict[str, Any]]:
        """Entries newer than `after`, oldest first (the live tail)."""
        c = request_log.c
        ts, rid = after
        stmt = (
            select(request_log)
            .where(*_filters(flt), or_(c.ts > ts, and_(c.ts == ts, c.request_id > rid)))
            .order_by(c.ts, c.request_id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{**r._mapping, "ts": _utc(r._mapping["ts"])} for r in rows]

    async def request(self, request_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(request_log).where(request_log.c.request_id == request_id))).first()
        return {**row._mapping, "ts": _utc(row._mapping["ts"])} if row else None

    async def audit_of_request(self, request_id: str, ts: datetime, latency_ms: float = 0.0) -> dict[str, Any] | None:
        """The request's audit record (seq, mac) whatever its age: records are appended when the
        request ends, in sequence order, so the first record at or after its start is found by
        bisecting the sequence (primary-key reads), and the records from there to a few minutes
        after its end are read, a batch at a time, for its kind (a served request, a denial or
        an authentication failure) and id."""
        a = audit_log.c
        start = _aware(ts) - timedelta(minutes=1)
        end = _aware(ts) + timedelta(milliseconds=latency_ms) + timedelta(minutes=10)
        async with self.engine.connect() as conn:
            low, high = (await conn.execute(select(func.min(a.seq), func.max(a.seq)))).one()
            if low is None:
                return None
            while low < high:  # the first seq whose record is at or after `start`
                mid = (low + high) // 2
                at = (await conn.execute(select(a.seq, a.ts).where(a.seq >= mid).order_by(a.seq).limit(1))).one()
                if _aware(at.ts) < start:
                    low = at.seq + 1
                else:
                    high = mid
            after = low - 1
            while True:
                stmt = (
                    select(a.seq, a.ts, a.kind, a.mac, a.prev_mac, a.data)
                    .where(a.seq > after)
                    .order_by(a.seq)
                    .limit(_AUDIT_BATCH)
                )
                rows = (await conn.execute(stmt)).all()
                for row in rows:
                    data = row.data or {}
                    if (
                        row.kind in REQUEST_AUDIT_KINDS
                        and isinstance(data, dict)
                        and data.get("request_id") == request_id
                    ):
                        return {"seq": row.seq, "ts": _utc(row.ts), "mac": row.mac, "prev_mac": row.prev_mac}
                if len(rows) < _AUDIT_BATCH or _aware(rows[-1].ts) > end:
                    return None
                after = rows[-1].seq

    async def sessions(
        self, flt: LogFilter, since: datetime, limit: int = 20, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Agent sessions active since `since`, the most recently active first, from the session
        ledger (sluice.sessions.ledger): one indexed range of `agent_session` and one read of
        the page's items, however large the log. Each row also has `first`/`last` (its span),
        `models` (how many), `model_names` and `tools` (MCP tools called, with counts). `owner`:
        only sessions of that user's keys."""
        query = SessionQuery(
            since=since, virtual_key_ids=flt.key_ids, team_ids=flt.team_ids, owner_user_id=owner, limit=limit
        )
        rows = await SessionReads(self.engine, _utc).page(query)
        for row in rows:
            row["first"], row["last"] = row["started_at"], row["ended_at"]
            row["model_names"] = [i["name"] for i in row["items"] if i["kind"] == "model"]
            row["models"] = len(row["model_names"])
            row["tools"] = [(i["name"], i["count"]) for i in row["items"] if i["kind"] == "tool"]
        return rows

    async def audit_records(
        self, kind: str | None, actor: str | None, before_seq: int | None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest audit records (by sequence number) matching the filters."""
        a = audit_log.c
        stmt = select(audit_log)
        if kind:
            stmt = stmt.where(a.kind == kind)
        if actor:
            stmt = stmt.where(a.actor == actor)
        if before_seq is not None:
            stmt = stmt.where(a.seq < before_seq)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(a.seq.desc()).limit(limit))).all()
        return [{**r._mapping, "ts": _utc(r._mapping["ts"])} for r in rows]

    # -- keys and objects, read a page at a time ---------------------------------------------------
    async def keys(
        self, vis: KeyVisibility, search: str = "", limit: int = 50, offset: int = 0
    ) -> tuple[list[VirtualKey], int]:
        """The keys the caller may see (one page of them, by id) and how many there are."""
        k = virtual_keys.c
        where = vis.clause()
        if search:
            like = f"%{search.replace('%', '').replace('_', '')}%"
            where.append(
                or_(
                    k.id.like(like),
                    k.name.like(like),
                    k.user_id.like(like),
                    k.team_id.like(like),
                    k.profile_id.like(like),
                )
            )
        async with self.engine.connect() as conn:
            total = int(
                (await conn.execute(select(func.count()).select_from(virtual_keys).where(*where))).scalar() or 0
            )
            rows = (
                await conn.execute(select(virtual_keys).where(*where).order_by(k.id).limit(limit).offset(offset))
            ).all()
        return [_key_from_row(r._mapping) for r in rows], total

    async def mcp_grants(self, vis: KeyVisibility, limit: int = 2000) -> list[VirtualKey]:
        """Keys with any MCP grant stored on them (the caller's visible ones), by id."""
        k = virtual_keys.c
        # Only keys whose grant lists are not empty: most keys carry an `mcp` document with empty
        # lists, and reading all of them (5,000 in bench/console.py) took most of a second.
        if self.is_sqlite:
            granted = [func.json_array_length(k.mcp, f"$.{name}") > 0 for name in ("tools", "tool_groups")]
        else:
            granted = [func.json_array_length(k.mcp.op("->")(name)) > 0 for name in ("tools", "tool_groups")]
        stmt = select(virtual_keys).where(*vis.clause(), k.mcp.is_not(None), or_(*granted)).order_by(k.id).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        found = [_key_from_row(r._mapping) for r in rows]
        return [key for key in found if key.mcp_tools or key.mcp_tool_groups][:limit]

    async def key_owners(self, key_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """(user id, team id) of each key."""
        if not key_ids:
            return {}
        k = virtual_keys.c
        found: dict[str, tuple[str | None, str | None]] = {}
        async with self.engine.connect() as conn:
            for i in range(0, len(key_ids), 500):
                stmt = select(k.id, k.user_id, k.team_id).where(k.id.in_(key_ids[i : i + 500]))
                found.update({r.id: (r.user_id, r.team_id) for r in (await conn.execute(stmt)).all()})
        return found

    async def key_ids_of_user(self, user_id: str) -> list[str]:
        stmt = select(virtual_keys.c.id).where(virtual_keys.c.user_id == user_id).order_by(virtual_keys.c.id)
        async with self.engine.connect() as conn:
            return [str(r[0]) for r in (await conn.execute(stmt)).all()]

    async def keys_per_team(self) -> dict[str, int]:
        k = virtual_keys.c
        stmt = select(k.team_id, func.count()).where(k.team_id.is_not(None)).group_by(k.team_id)
        async with self.engine.connect() as conn:
            return {str(t): int(n) for t, n in (await conn.execute(stmt)).all()}

    async def keys_per_profile(self) -> dict[str, int]:
        k = virtual_keys.c
        stmt = select(k.profile_id, func.count()).where(k.profile_id.is_not(None)).group_by(k.profile_id)
        async with self.engine.connect() as conn:
            return {str(p): int(n) for p, n in (await conn.execute(stmt)).all()}

    async def objects(self, kind: str) -> list[ConfigObject]:
        c = config_objects.c
        stmt = select(config_objects).where(c.kind == kind).order_by(c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [ConfigObject(r.kind, r.id, r.body, r.source) for r in rows]

    async def key_budgets(self, key_ids: list[str]) -> list[ConfigObject]:
        """The budgets attached to these keys."""
        if not key_ids:
            return []
        c = config_objects.c
        target = c.body["virtual_key_id"].as_string()
        stmt = select(config_objects).where(c.kind == "budget", target.in_(key_ids)).order_by(c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [ConfigObject(r.kind, r.id, r.body, r.source) for r in rows]

    async def caps(self) -> list[ConfigObject]:
        """Budgets attached to a team or a customer."""
        c = config_objects.c
        target = c.body["virtual_key_id"].as_string()
        stmt = select(config_objects).where(c.kind == "budget", target.is_(None)).order_by(c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [ConfigObject(r.kind, r.id, r.body, r.source) for r in rows]

    # -- budgets ---------------------------------------------------------------------------------
    async def spent_many(self, scope: str, scope_ids: list[str], start: datetime, end: datetime) -> dict[str, int]:
        """Settled spend (pico-dollars, from the durable ledger) of many keys, teams or customers
        sharing one window, in one grouped query."""
        if not scope_ids:
            return {}
        column = {
            "virtual_key": spend_ledger.c.virtual_key_id,
            "team": spend_ledger.c.team_id,
            "customer": spend_ledger.c.customer_id,
        }[scope]
        stmt = (
            select(column, func.coalesce(func.sum(spend_ledger.c.cost_pico), 0))
            .where(column.in_(scope_ids), spend_ledger.c.ts >= start, spend_ledger.c.ts < end)
            .group_by(column)
        )
        async with self.engine.connect() as conn:
            return {str(k): int(v) for k, v in (await conn.execute(stmt)).all()}

    async def anchors(self, rule_ids: list[str]) -> dict[str, datetime]:
        """When each rolling budget's windows started counting (what the limits store as
        `anchor:<rule id>`)."""
        if not rule_ids:
            return {}
        names = [f"anchor:{r}" for r in rule_ids]
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(meta.c.name, meta.c.value).where(meta.c.name.in_(names)))).all()
        return {str(n).removeprefix("anchor:"): datetime.fromtimestamp(int(v), UTC) for n, v in rows}


def _filters(flt: LogFilter) -> list[Any]:
    c = request_log.c
    found: list[Any] = []
    if flt.key_ids is not None:
        found.append(c.virtual_key_id.in_(flt.key_ids))
    if flt.team_ids is not None:
        found.append(c.team_id.in_(flt.team_ids))
    for column, value in (
        (c.model, flt.model),
        (c.decision, flt.decision),
        (c.session_id, flt.session_id),
        (c.status, flt.status),
    ):
        if value is not None:
            found.append(column == value)
    if flt.since is not None:
        found.append(c.ts >= flt.since)
    if flt.until is not None:
        found.append(c.ts < flt.until)
    return found


__all__ = [
    "DIMS",
    "MEASURES",
    "SCOPED_DIMS",
    "ConsoleQueries",
    "KeyVisibility",
    "LogFilter",
    "Totals",
    "Within",
    "day_start",
    "hours_ago",
    "month_start",
]
