"""Read-only queries behind the console's pages, over the SQL store's engine.

Two rules keep them fast on a large log and away from the gateway's hot path:
- whole-gateway figures (spend today / this month by team, key, model, provider; the trend) come
  from `console_rollup` (migration 0011), an hourly and daily roll-up of the request log that the
  console refreshes itself from the last two hours of the log (an indexed range), at most once
  every `refresh_s`; the request path never writes it;
- everything else reads the log through an index (ts, and key/team/model/session/decision/status
  with ts), newest first, a page at a time, never counting the whole table.
Nothing here writes anything but the roll-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.core.tasks import spawn
from sluice.storage.backends.sql import _key_from_row
from sluice.storage.backends.sql_tables import (
    audit_log,
    config_events,
    config_objects,
    meta,
    request_log,
    spend_ledger,
    virtual_keys,
)
from sluice.storage.records import ConfigObject, VirtualKey

log = logging.getLogger("sluice.console")
_metadata = MetaData()
rollup = Table(
    "console_rollup",
    _metadata,
    Column("grain", String(1), primary_key=True),
    Column("dim", String(16), primary_key=True),
    Column("scope", String(200), primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("value", String(300), primary_key=True),
    Column("cost_pico", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("denied", Integer, nullable=False),
    Column("rate_limited", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
)
DIMS = {
    "total": None,
    "team": request_log.c.team_id,
    "key": request_log.c.virtual_key_id,
    "model": request_log.c.model,
    "provider": request_log.c.provider,
}
# Rolled up per (scope kind, dimension): the whole gateway ("" scope), per team and per key, so a
# team lead's or a developer's overview reads the roll-up too, never their share of the log.
SCOPES: dict[str, Any] = {"": None, "team": request_log.c.team_id, "key": request_log.c.virtual_key_id}
SCOPED_DIMS = {
    "": ("total", "team", "key", "model", "provider"),
    "team": ("total", "key", "model", "provider"),
    "key": ("total", "model", "provider"),
}
_INLINE_ROWS = 50_000  # a first build over fewer log rows than this runs inline (well under a second)
_KEEP_HOURS_DAYS = 3  # hourly rows older than this are folded into their day and dropped
_WATERMARK = "console_rollup_until"
_LATE_S = 7200  # log rows may land this late (the recorder's batches, a spill replayed): re-read them
RATE_LIMITED_KINDS = ("policy_rate_limited", "policy_budget_busy")
MEASURES = ("cost_pico", "tokens", "requests", "denied", "rate_limited", "errors")


@dataclass(frozen=True, slots=True)
class Totals:
    value: str | None
    cost_pico: int = 0
    tokens: int = 0
    requests: int = 0
    denied: int = 0
    rate_limited: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Within:
    """A share of the gateway: some teams (`kind` "team") or some keys ("key")."""

    kind: str
    ids: tuple[str, ...]


def _scoped(dim: str, within: Within | None) -> tuple[str, list[str]]:
    if within is None:
        return dim, [""]
    if dim not in SCOPED_DIMS[within.kind]:
        raise ValueError(f"no {dim} roll-up within a {within.kind}")
    return f"{within.kind}:{dim}", list(within.ids) or ["\x00none"]


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


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _measures() -> list[Any]:
    c = request_log.c
    return [
        func.coalesce(func.sum(c.cost_pico), 0).label("cost_pico"),
        func.coalesce(func.sum(c.input_tokens + c.output_tokens), 0).label("tokens"),
        func.count().label("requests"),
        func.coalesce(func.sum(case((c.decision == "deny", 1), else_=0)), 0).label("denied"),
        func.coalesce(func.sum(case((c.error_kind.in_(RATE_LIMITED_KINDS), 1), else_=0)), 0).label("rate_limited"),
        func.coalesce(func.sum(case((c.error_kind.like("provider%"), 1), else_=0)), 0).label("errors"),
    ]


def _totals(row: Any) -> Totals:
    value = row[0]
    return Totals(None if value in (None, "") else str(value), *(int(v or 0) for v in row[1:7]))


class ConsoleQueries:
    def __init__(self, engine: AsyncEngine, *, refresh_s: float = 5.0, write_lock: Any = None) -> None:
        self.engine = engine
        self.write_lock = write_lock
        self.is_sqlite = engine.url.get_backend_name() == "sqlite"
        self.refresh_s = refresh_s
        self._refreshed = 0.0
        self._lock = asyncio.Lock()
        self._building: asyncio.Task[None] | None = None

    async def freshen(self, now: datetime | None = None) -> bool:
        """Refreshes the roll-up when that is cheap and says whether it is current. A first build
        over a large log, or a gap of more than a day, runs in the background instead (a page
        never waits for it): False until it is done."""
        if self._building is not None and not self._building.done():
            return False
        now = now or datetime.now(UTC)
        async with self.engine.connect() as conn:
            mark = (await conn.execute(select(meta.c.value).where(meta.c.name == _WATERMARK))).scalar()
            small = (
                mark is None
                and (
                    await conn.execute(
                        select(func.count()).select_from(request_log.select().limit(_INLINE_ROWS).subquery())
                    )
                ).scalar_one()
                < _INLINE_ROWS
            )
        if small or (mark is not None and now.timestamp() - int(mark) < 86400):
            try:
                await self.refresh(now)
            except Exception:  # e.g. another replica refreshing the same hours: figures stay a moment older
                log.warning("refreshing the console roll-up failed; showing it as it was", exc_info=True)
            return True
        self._building = spawn(self.refresh(now, force=True), name="console-rollup")
        return False

    # -- the roll-up --------------------------------------------------------------------------
    async def refresh(self, now: datetime | None = None, *, force: bool = False) -> None:
        """Brings the roll-up up to `now`: re-aggregates the hours since the watermark (less the
        late margin) from the log, then the days those hours fall in, one day at a time. Each day
        is read in a read-only snapshot and written in a short transaction of its own, so the
        gateway's writers (request log, spend ledger) never wait behind a long one."""
        if not force and time.monotonic() - self._refreshed < self.refresh_s:
            return
        async with self._lock:
            if not force and time.monotonic() - self._refreshed < self.refresh_s:
                return
            now = now or datetime.now(UTC)
            async with self.engine.connect() as conn:
                mark = (await conn.execute(select(meta.c.value).where(meta.c.name == _WATERMARK))).scalar()
                if mark is None:
                    first = _utc((await conn.execute(select(func.min(request_log.c.ts)))).scalar())
                    start = _day(first or now)
                else:
                    start = _hour(datetime.fromtimestamp(int(mark) - _LATE_S, UTC))
            day = _day(start)
            while day <= now:
                await self._rebuild_day(day, max(start, day), now)
                day += timedelta(days=1)
            async with self._writing(), self.engine.begin() as conn:
                stamp = int(now.timestamp())
                done = await conn.execute(update(meta).where(meta.c.name == _WATERMARK).values(value=stamp))
                if not done.rowcount:
                    await conn.execute(insert(meta).values(name=_WATERMARK, value=stamp))
            self._refreshed = time.monotonic()

    def _writing(self) -> Any:
        """The store's own write lock when it has one (SQLite takes one writer at a time)."""
        return self.write_lock if self.write_lock is not None else _nothing()

    async def _rebuild_day(self, day: datetime, start: datetime, now: datetime) -> None:
        c = request_log.c
        end = day + timedelta(days=1)
        hours = self._bucket_expr(c.ts, "h")
        hourly: list[dict[str, Any]] = []
        async with self.engine.connect() as conn:
            for kind, dims in SCOPED_DIMS.items():
                scope_col = SCOPES[kind]
                scope = func.coalesce(scope_col, "") if scope_col is not None else literal("")
                for dim in dims:
                    column = DIMS[dim]
                    value = func.coalesce(column, "") if column is not None else literal("")
                    stmt = (
                        select(hours.label("bucket"), scope.label("scope"), value.label("value"), *_measures())
                        .where(c.ts >= start, c.ts < end)
                        .group_by(hours, scope, value)
                    )
                    name = f"{kind}:{dim}" if kind else dim
                    for got in (await conn.execute(stmt)).all():
                        row = dict(zip(MEASURES, got[3:], strict=True))
                        bucket = self._as_datetime(got[0])
                        hourly.append(
                            {
                                "grain": "h",
                                "dim": name,
                                "scope": str(got[1])[:200],
                                "bucket": bucket,
                                "value": str(got[2])[:300],
                                **row,
                            }
                        )
        r = rollup.c
        async with self._writing(), self.engine.begin() as conn:
            await conn.execute(delete(rollup).where(r.grain == "h", r.bucket >= start, r.bucket < end))
            if hourly:
                await conn.execute(insert(rollup), hourly)
            # The day from its hours (the ones just written and any earlier ones of the day).
            sums = [func.sum(getattr(r, m)) for m in MEASURES]
            stmt = (
                select(r.dim, r.scope, r.value, *sums)
                .where(r.grain == "h", r.bucket >= day, r.bucket < end)
                .group_by(r.dim, r.scope, r.value)
            )
            daily = [
                {
                    "grain": "d",
                    "dim": row[0],
                    "scope": row[1],
                    "bucket": day,
                    "value": row[2],
                    **dict(zip(MEASURES, row[3:], strict=True)),
                }
                for row in (await conn.execute(stmt)).all()
            ]
            await conn.execute(delete(rollup).where(r.grain == "d", r.bucket == day))
            if daily:
                await conn.execute(insert(rollup), daily)
            if day < _day(now) - timedelta(days=_KEEP_HOURS_DAYS):  # its day row holds it now
                await conn.execute(delete(rollup).where(r.grain == "h", r.bucket >= day, r.bucket < end))

    def _bucket_expr(self, column: Any, grain: str) -> Any:
        if self.is_sqlite:
            return func.strftime("%Y-%m-%d %H:00:00" if grain == "h" else "%Y-%m-%d 00:00:00", column)
        # In UTC whatever the session's time zone: a timestamp without zone, read back as UTC.
        return func.date_trunc("hour" if grain == "h" else "day", func.timezone("UTC", column))

    @staticmethod
    def _as_datetime(value: Any) -> datetime:
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return _utc(value) or value

    async def spend_by(
        self, dim: str, since: datetime, now: datetime, limit: int = 10, within: Within | None = None
    ) -> list[Totals]:
        """Figures per `dim` value from `since` (a day boundary) to now, largest cost first: whole
        days from the daily rows, today from the hourly ones. `within`: only these teams' or
        keys' share (summed over them)."""
        today = _day(now)
        r = rollup.c
        name, scopes = _scoped(dim, within)
        where = or_(
            and_(r.grain == "d", r.bucket >= since, r.bucket < today),
            and_(r.grain == "h", r.bucket >= max(since, today)),
        )
        sums = [
            func.sum(getattr(r, m)) for m in ("cost_pico", "tokens", "requests", "denied", "rate_limited", "errors")
        ]
        stmt = (
            select(r.value, *sums)
            .where(r.dim == name, r.scope.in_(scopes), where)
            .group_by(r.value)
            .order_by(sums[0].desc(), r.value)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_totals(row) for row in (await conn.execute(stmt)).all()]

    async def per_scope(self, kind: str, ids: list[str], since: datetime, now: datetime) -> list[Totals]:
        """Each team's or key's own totals from `since`, largest cost first (value: the id)."""
        if not ids:
            return []
        today = _day(now)
        r = rollup.c
        where = or_(
            and_(r.grain == "d", r.bucket >= since, r.bucket < today),
            and_(r.grain == "h", r.bucket >= max(since, today)),
        )
        sums = [func.sum(getattr(r, m)) for m in MEASURES]
        stmt = (
            select(r.scope, *sums)
            .where(r.dim == f"{kind}:total", r.scope.in_(ids), where)
            .group_by(r.scope)
            .order_by(sums[0].desc(), r.scope)
        )
        async with self.engine.connect() as conn:
            return [_totals(row) for row in (await conn.execute(stmt)).all()]

    async def trend(self, grain: str, since: datetime, within: Within | None = None) -> list[tuple[datetime, Totals]]:
        """Figures per hour or per day from `since`, oldest first (`within`: as in spend_by)."""
        r = rollup.c
        name, scopes = _scoped("total", within)
        sums = [func.sum(getattr(r, m)) for m in MEASURES]
        stmt = (
            select(r.bucket, literal(""), *sums)
            .where(r.grain == grain, r.dim == name, r.scope.in_(scopes), r.bucket >= since)
            .group_by(r.bucket)
            .order_by(r.bucket)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(self._as_datetime(row[0]), _totals(row[1:])) for row in rows]

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

    async def audit_of_request(self, request_id: str) -> dict[str, Any] | None:
        """The request's audit record (seq, mac), found among the newest records of its kind."""
        stmt = (
            select(audit_log.c.seq, audit_log.c.ts, audit_log.c.mac, audit_log.c.prev_mac, audit_log.c.data)
            .where(audit_log.c.kind == "request")
            .order_by(audit_log.c.seq.desc())
            .limit(5000)
        )
        async with self.engine.connect() as conn:
            for row in (await conn.execute(stmt)).all():
                data = row.data or {}
                if isinstance(data, dict) and data.get("request_id") == request_id:
                    return {"seq": row.seq, "ts": _utc(row.ts), "mac": row.mac, "prev_mac": row.prev_mac}
        return None

    async def sessions(self, flt: LogFilter, since: datetime, limit: int = 20) -> list[dict[str, Any]]:
        """Agent sessions (the client's session id) as one line each: requests, cost, first and
        last request, models, the most recently active first. Two indexed steps rather than a
        grouping of every row since `since`: the newest rows, a page at a time, until `limit`
        distinct sessions are seen; then those sessions' rows through the (session_id, ts) index."""
        c = request_log.c
        where = [
            *_filters(LogFilter(key_ids=flt.key_ids, team_ids=flt.team_ids, since=since)),
            c.session_id.is_not(None),
        ]
        recent: list[str] = []
        before: tuple[datetime, str] | None = None
        async with self.engine.connect() as conn:
            while len(recent) < limit:
                stmt = select(c.session_id, c.ts, c.request_id).where(*where)
                if before is not None:
                    stmt = stmt.where(or_(c.ts < before[0], and_(c.ts == before[0], c.request_id < before[1])))
                page = (await conn.execute(stmt.order_by(c.ts.desc(), c.request_id.desc()).limit(2000))).all()
                for session_id, _, _ in page:
                    if session_id not in recent:
                        recent.append(session_id)
                        if len(recent) == limit:
                            break
                if len(page) < 2000:
                    break
                before = (page[-1][1], page[-1][2])
            if not recent:
                return []
            last = func.max(c.ts)
            stmt = (
                select(
                    c.session_id,
                    func.count().label("requests"),
                    func.coalesce(func.sum(c.cost_pico), 0).label("cost_pico"),
                    func.min(c.ts).label("first"),
                    last.label("last"),
                    func.count(func.distinct(c.model)).label("models"),
                )
                .where(*where, c.session_id.in_(recent))
                .group_by(c.session_id)
                .order_by(last.desc())
            )
            rows = (await conn.execute(stmt)).all()
        return [{**r._mapping, "first": _utc(r.first), "last": _utc(r.last)} for r in rows]

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
        stmt = select(virtual_keys).where(*vis.clause(), k.mcp.is_not(None)).order_by(k.id).limit(limit * 5)
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

    async def team_key_spend(
        self, team_ids: list[str], since: datetime, now: datetime, per_team: int = 20
    ) -> dict[str, list[Totals]]:
        """Each team's keys by cost since `since`, from the roll-up (one grouped query)."""
        if not team_ids:
            return {}
        today = _day(now)
        r = rollup.c
        where = or_(
            and_(r.grain == "d", r.bucket >= since, r.bucket < today),
            and_(r.grain == "h", r.bucket >= max(since, today)),
        )
        sums = [func.sum(getattr(r, m)) for m in MEASURES]
        stmt = (
            select(r.scope, r.value, *sums)
            .where(r.dim == "team:key", r.scope.in_(team_ids), where)
            .group_by(r.scope, r.value)
            .order_by(sums[0].desc())
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        found: dict[str, list[Totals]] = {}
        for row in rows:
            bucket = found.setdefault(str(row[0]), [])
            if len(bucket) < per_team:
                bucket.append(_totals(row[1:]))
        return found

    # -- budgets --------------------------------------------------------------------------------
    async def spent(self, scope: str, scope_id: str, start: datetime, end: datetime) -> int:
        """Settled spend (pico-dollars) of a key, team or customer in a window, from the ledger."""
        column = {
            "virtual_key": spend_ledger.c.virtual_key_id,
            "team": spend_ledger.c.team_id,
            "customer": spend_ledger.c.customer_id,
        }[scope]
        stmt = select(func.coalesce(func.sum(spend_ledger.c.cost_pico), 0)).where(
            column == scope_id, spend_ledger.c.ts >= start, spend_ledger.c.ts < end
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar() or 0)

    async def spent_many(self, scope: str, scope_ids: list[str], start: datetime, end: datetime) -> dict[str, int]:
        """`spent` of many keys, teams or customers sharing one window, in one grouped query."""
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

    async def recent_events(self, limit: int = 20) -> list[dict[str, Any]]:
        stmt = select(config_events).order_by(config_events.c.seq.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{**r._mapping, "ts": _utc(r._mapping["ts"])} for r in rows]


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


def month_start(now: datetime) -> datetime:
    return _day(now).replace(day=1)


def day_start(now: datetime) -> datetime:
    return _day(now)


def hours_ago(now: datetime, hours: int) -> datetime:
    return _hour(now) - timedelta(hours=hours)
