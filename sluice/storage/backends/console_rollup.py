"""The console's spend roll-up (`console_rollup`, migration 0011): the request log summed per hour
and per day, for the whole gateway, within each team and within each key, so no page of the
console sums the log itself. Every insert into the log marks its hour (a trigger, migration
0017), and the console re-reads exactly the marked hours from the log (an indexed range), at most
every `refresh_s`, one day per short transaction: a row landing days late (a spill replayed) is
counted like any other. The request path never reads or writes the roll-up. A first build over a
large log runs in the background; `sluice console rebuild-rollup` rebuilds it from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
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
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.core.tasks import spawn
from sluice.storage.backends.sql_tables import meta, request_log

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
# Hours the request log gained rows in since the roll-up last read them, marked by a trigger on
# every insert (migration 0017): claimed = 0 until a refresh claims the mark with its token.
dirty = Table(
    "console_rollup_dirty",
    _metadata,
    Column("hour", DateTime(timezone=False), nullable=False),
    Column("claimed", Integer, nullable=False),
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
_ROWID = "console_rollup_rowid"  # SQLite: the newest request-log rowid the roll-up has read
_ROWID_OF = "console_rollup_rowid_of"  # and a digest of that row's request id
_SQLITE_HOUR = "strftime('%Y-%m-%d %H:00:00', ts)"
_INLINE_HOURS = 48  # more marked hours than this (a spill replayed days late) rebuild in the background
RATE_LIMITED_KINDS = ("policy_rate_limited", "policy_budget_busy")
MEASURES = ("cost_pico", "tokens", "requests", "denied", "rate_limited", "errors")


@dataclass(frozen=True, slots=True)
class Claim:
    """What a refresh is about to read: the hours that gained rows, and how to record that it
    read them (PostgreSQL: the token its marks were claimed with; SQLite: the newest rowid, and a
    digest of its request id, it saw). `everything`: read the whole log again."""

    hours: set[datetime]
    everything: bool = False
    token: int | None = None
    upto: tuple[int, int] | None = None


def _digest(request_id: str) -> int:
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:7], "big")


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


class RollupReads:
    """The roll-up's refresh and its reads."""

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
        over a large log, a gap of more than a day, or late rows marking more than two days of
        hours run in the background instead (a page never waits for them): False until done."""
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
            marked = await self._pending_hours(conn)
        recent = mark is not None and now.timestamp() - int(mark) < 86400 and marked <= _INLINE_HOURS
        if small or recent:
            try:
                await self.refresh(now)
            except Exception:  # e.g. another replica claiming the same marks: figures stay a moment older
                log.warning("refreshing the console roll-up failed; showing it as it was", exc_info=True)
            return True
        self._building = spawn(self.refresh(now, force=True), name="console-rollup")
        return False

    # -- the roll-up --------------------------------------------------------------------------
    async def refresh(self, now: datetime | None = None, *, force: bool = False) -> None:
        """Brings the roll-up up to date: re-aggregates from the log exactly the hours that rows
        were inserted into since the last refresh (their marks, however late the rows), then the
        days those hours fall in, one day at a time; a first build reads every day of the log.
        Each day is read in a read-only snapshot and written in a short transaction of its own,
        so the gateway's writers (request log, spend ledger) never wait behind a long one."""
        if not force and time.monotonic() - self._refreshed < self.refresh_s:
            return
        async with self._lock:
            if not force and time.monotonic() - self._refreshed < self.refresh_s:
                return
            now = now or datetime.now(UTC)
            async with self.engine.connect() as conn:
                mark = (await conn.execute(select(meta.c.value).where(meta.c.name == _WATERMARK))).scalar()
            claim = await self._claim()
            if mark is None or claim.everything:
                await self._rebuild_days(None, now, claim)
                return
            today = _day(now)
            starts: dict[datetime, datetime] = {}
            for hour in claim.hours:
                day = _day(hour)
                # A day older than the hourly rows kept has only its day row: read all of it again.
                folded = day < today - timedelta(days=_KEEP_HOURS_DAYS)
                starts[day] = day if folded else min(starts.get(day, hour), hour)
            for day in sorted(starts):
                await self._rebuild_day(day, starts[day], now)
            await self._finish(now, claim)

    async def rebuild(
        self,
        since: datetime | None = None,
        now: datetime | None = None,
        progress: Callable[[datetime, int, int], None] | None = None,
    ) -> int:
        """Rebuilds every day of the roll-up from `since` (a day; default: the log's first) to
        today from the log, whatever the marks say (`sluice console rebuild-rollup`); calls
        `progress(day, done, days)` after each day. Returns the number of days rebuilt. Days
        before the log's first are left as they are (their rows may be gone by retention)."""
        async with self._lock:
            claim = await self._claim()
            return await self._rebuild_days(since, now or datetime.now(UTC), claim, progress)

    async def _rebuild_days(
        self,
        since: datetime | None,
        now: datetime,
        claim: Claim,
        progress: Callable[[datetime, int, int], None] | None = None,
    ) -> int:
        if since is None:
            async with self.engine.connect() as conn:
                since = _utc((await conn.execute(select(func.min(request_log.c.ts)))).scalar()) or now
        first = _day(_utc(since) or now)
        days = [first + timedelta(days=i) for i in range((_day(now) - first).days + 1)]
        for done, day in enumerate(days, 1):
            await self._rebuild_day(day, day, now)
            if progress is not None:
                progress(day, done, len(days))
        await self._finish(now, claim)
        return len(days)

    async def _pending_hours(self, conn: Any) -> int:
        """How many hours have rows the roll-up has not read yet (at least)."""
        if not self.is_sqlite:
            return int((await conn.execute(select(func.count()).select_from(dirty))).scalar_one())
        mark = (await conn.execute(select(meta.c.value).where(meta.c.name == _ROWID))).scalar()
        query = f"SELECT count(*) FROM (SELECT DISTINCT {_SQLITE_HOUR} FROM request_log WHERE rowid > ?)"
        return int((await conn.exec_driver_sql(query, (int(mark or 0),))).scalar_one())

    async def _claim(self) -> Claim:
        """The hours that gained rows since the last refresh.

        PostgreSQL: claims every mark (unclaimed ones, and those of a refresh that never finished)
        with a token of this refresh. The claim waits for the writers holding a share lock on an
        unclaimed mark (sluice/storage/migrations/versions/0017), so every row behind a claimed
        mark is committed before its hour is read.

        SQLite: the rows after the last refresh's rowid. SQLite has one writer at a time and gives
        a new row the highest rowid yet plus one, so the rows committed since are exactly those
        above it; a trigger would cost each insert about 35 µs of CPU (bench/console_marks.py).
        Only deleting the newest rows lets a rowid be given again: the row the mark names is
        checked, and when it is not the one seen, everything is read again."""
        if self.is_sqlite:
            async with self.engine.connect() as conn:
                marks = dict(
                    (
                        await conn.execute(
                            select(meta.c.name, meta.c.value).where(meta.c.name.in_((_ROWID, _ROWID_OF)))
                        )
                    ).all()
                )
                mark = int(marks.get(_ROWID) or 0)
                seen = (
                    await conn.exec_driver_sql("SELECT request_id FROM request_log WHERE rowid = ?", (mark,))
                ).scalar()
                everything = mark > 0 and (seen is None or _digest(str(seen)) != marks.get(_ROWID_OF))
                top = (
                    await conn.exec_driver_sql("SELECT rowid, request_id FROM request_log ORDER BY rowid DESC LIMIT 1")
                ).first()
                query = f"SELECT DISTINCT {_SQLITE_HOUR} FROM request_log WHERE rowid > ?"
                rows = (await conn.exec_driver_sql(query, (mark,))).all()
            hours = {_hour(self._as_datetime(row[0])) for row in rows if row[0]}
            newest = tuple(top) if top is not None else (0, "")
            upto = (int(newest[0]), _digest(str(newest[1]))) if top is not None else (0, 0)
            return Claim(hours, everything or not marks.get(_ROWID), upto=upto)
        token = secrets.randbelow(2**31 - 2) + 1
        async with self._writing(), self.engine.begin() as conn:
            await conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            await conn.execute(update(dirty).values(claimed=token))
            rows = (await conn.execute(select(dirty.c.hour).where(dirty.c.claimed == token).distinct())).all()
        return Claim({_hour(self._as_datetime(row[0])) for row in rows}, token=token)

    async def _finish(self, now: datetime, claim: Claim) -> None:
        """Folds hourly rows older than three days (their day rows hold them), records when the
        roll-up was last brought up to date and what it has read (drops the claimed marks, or
        moves the rowid mark)."""
        r = rollup.c
        cutoff = _day(now) - timedelta(days=_KEEP_HOURS_DAYS)
        values = {_WATERMARK: int(now.timestamp())}
        if claim.upto is not None:
            values[_ROWID], values[_ROWID_OF] = claim.upto
        async with self._writing(), self.engine.begin() as conn:
            await conn.execute(delete(rollup).where(r.grain == "h", r.bucket < cutoff))
            for name, value in values.items():
                done = await conn.execute(update(meta).where(meta.c.name == name).values(value=value))
                if not done.rowcount:
                    await conn.execute(insert(meta).values(name=name, value=value))
            if claim.token is not None:
                await conn.execute(delete(dirty).where(dirty.c.claimed == claim.token))
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


def month_start(now: datetime) -> datetime:
    return _day(now).replace(day=1)


def day_start(now: datetime) -> datetime:
    return _day(now)


def hours_ago(now: datetime, hours: int) -> datetime:
    return _hour(now) - timedelta(hours=hours)
