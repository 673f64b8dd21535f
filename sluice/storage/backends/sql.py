"""The SQL store over SQLAlchemy's async engine: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, case, event, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sluice.core.errors import ErrorKind
from sluice.sessions.ledger import SessionDelta, fold
from sluice.storage.backends.sql_alert_claims import SqlAlertClaims
from sluice.storage.backends.sql_sessions import (
    SessionReads,
    item_rows,
    item_upsert_sql,
    session_rows,
    session_upsert_sql,
)
from sluice.storage.backends.sql_stops import SqlStops
from sluice.storage.backends.sql_tables import (
    agent_metrics,
    agent_session,
    agent_session_item,
    audit_anchor,
    audit_dead_letters,
    audit_export_state,
    audit_log,
    config_events,
    config_objects,
    gateway_grants,
    meta,
    oauth_clients,
    request_log,
    spend_ledger,
    virtual_keys,
)
from sluice.storage.backends.sqlite_writer import RowShape, SqliteWriter, sqlite_ts
from sluice.storage.grants import (
    AGENT_COST_METRICS,
    AGENT_TOKEN_METRICS,
    AgentMetric,
    GatewayGrant,
    GrantLookup,
    OAuthClient,
)
from sluice.storage.records import (
    AuditRecord,
    ConfigEvent,
    ConfigObject,
    LoggedRequest,
    ProviderGrant,
    RequestLogEntry,
    RequestQuery,
    SessionQuery,
    SpendRow,
    VirtualKey,
)

_KEYS_VERSION = "keys_version"
_STALE_CLIENT_S = 24 * 3600.0  # an unused registered MCP client older than this may be dropped when full
_CLIENTS_LOCK = 0x51C3_0A17  # the advisory lock key of oauth_clients' bound (any constant, used once)
_CONFIG_VERSION = "config_version"
_GRANTS_VERSION = "grants_version"  # moves when a sign-in is revoked or changes key (token caches)

GUARDRAIL_BLOCKED = ErrorKind.POLICY_GUARDRAIL.value.code  # the error kind of a request a guardrail blocked


def normalise_url(url: str) -> str:
    """Accept the plain URLs people write and pick the async driver for them."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything Sluice stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class SqlStore(SqlStops, SqlAlertClaims):
    def __init__(self, url: str, *, linger_s: float = 0.0) -> None:
        """`linger_s`: how long request-log rows, which nobody awaits, wait for company (store.linger_ms)."""
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
            kwargs.update(pool_size=4, max_overflow=4)  # connections are costly to open: keep a few
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # SQLite allows one writer at a time; serialising our own writes avoids busy retries.
        self._write_lock = asyncio.Lock()
        # Moves with every change of a key or a sign-in's standing that this process writes, so
        # this process's caches of them drop it before the next request (other replicas poll).
        self.credentials_generation = 0
        # The hot writes (request log, spend ledger, audit log) of a file database skip SQLAlchemy.
        path = self.url.split(":///", 1)[1] if self.is_sqlite and ":///" in self.url else ""
        self._fast: SqliteWriter | None = None
        self._commits = self._rows = 0  # the hot writes' transactions not through _fast
        if path and path != ":memory:" and "?" not in path and not path.startswith("file:"):
            self._fast = SqliteWriter(path, self._write_lock, linger_s=linger_s)
        # The others (PostgreSQL) bind plain tuples to a fixed INSERT: no compilation or bind processors.
        dialect = "sqlite" if self.is_sqlite else "postgresql"
        self._plain = self.url.startswith(("sqlite", "postgresql+asyncpg"))
        self._requests_shape = RowShape(request_log, RequestLogEntry, skip_existing=True, dialect=dialect)
        self._spend_shape = RowShape(spend_ledger, SpendRow, skip_existing=True, dialect=dialect)
        self._audit_shape = RowShape(audit_log, AuditRecord, skip_existing=False, dialect=dialect)
        # The session ledger, kept in the request log's own transactions (sluice.sessions.ledger).
        marks = dialect if self._plain else "named"
        self._session_sql, self._item_sql = session_upsert_sql(marks), item_upsert_sql(marks)
        self.sessions = SessionReads(self.engine, _utc)

    @property
    def write_lock(self) -> asyncio.Lock:
        """This process's turn to write (SQLite allows one writer; see `__init__`)."""
        return self._write_lock

    async def migrate(self) -> None:
        await asyncio.to_thread(_alembic_upgrade, self.url)

    async def close(self) -> None:
        if self._fast is not None:
            await self._fast.close()
        await self.engine.dispose()

    # -- keys -------------------------------------------------------------------------------
    async def key_by_hash(self, key_hash: str) -> VirtualKey | None:
        """The key whose secret, or whose previous secret (after a rotation), hashes to `key_hash`."""
        found = or_(virtual_keys.c.key_hash == key_hash, virtual_keys.c.previous_key_hash == key_hash)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(virtual_keys).where(found))).first()
        return _key_from_row(row._mapping) if row else None

    async def key_by_id(self, key_id: str) -> VirtualKey | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(virtual_keys).where(virtual_keys.c.id == key_id))).first()
        return _key_from_row(row._mapping) if row else None

    async def list_keys(self) -> list[VirtualKey]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(virtual_keys).order_by(virtual_keys.c.id))).all()
        return [_key_from_row(r._mapping) for r in rows]

    async def create_key(self, key: VirtualKey, event: ConfigEvent | None = None) -> None:
        now = datetime.now(UTC)
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(insert(virtual_keys).values(**_key_to_row(key, now), created_at=now))
            await self._bump_credentials(conn, _KEYS_VERSION)
            if event is not None:
                await self._record_event(conn, event)

    async def seed_config_key(self, key: VirtualKey, *, replace_secret: bool) -> bool:
        now = datetime.now(UTC)
        row = _key_to_row(key, now)
        async with self._write_lock, self.engine.begin() as conn:
            existing = (await conn.execute(select(virtual_keys.c.id).where(virtual_keys.c.id == key.id))).first()
            if existing is None:
                await conn.execute(insert(virtual_keys).values(**row, created_at=now))
            else:
                row.pop("revoked_at")  # a revocation outlives restarts and config reloads
                if not replace_secret:
                    row.pop("key_hash")
                    row.pop("key_hint")
                await conn.execute(update(virtual_keys).where(virtual_keys.c.id == key.id).values(**row))
            await self._bump_credentials(conn, _KEYS_VERSION)
        return existing is None

    async def update_key(self, key: VirtualKey, event: ConfigEvent | None = None) -> bool:
        """Replaces every field of an existing key but its creation time; False when unknown."""
        now = datetime.now(UTC)
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(
                update(virtual_keys).where(virtual_keys.c.id == key.id).values(**_key_to_row(key, now))
            )
            await self._bump_credentials(conn, _KEYS_VERSION)
            if event is not None and result.rowcount:
                await self._record_event(conn, event)
        return bool(result.rowcount)

    async def revoke_key(self, key_id: str, at: datetime) -> bool:
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(
                update(virtual_keys)
                .where(virtual_keys.c.id == key_id, virtual_keys.c.revoked_at.is_(None))
                .values(revoked_at=at, updated_at=at)
            )
            await self._bump_credentials(conn, _KEYS_VERSION)
        return bool(result.rowcount)

    # -- gateway sign-in grants ---------------------------------------------------------------
    async def create_grant(self, grant: GatewayGrant) -> None:
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(insert(gateway_grants).values(**dataclasses.asdict(grant)))

    async def grant_by(self, column: GrantLookup, value: str) -> GatewayGrant | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(gateway_grants).where(gateway_grants.c[column] == value))).first()
        return GatewayGrant(**row._mapping) if row else None

    async def swap_grant(self, old: GatewayGrant, new: GatewayGrant) -> bool:
        """Compare-and-set on the version: of two replicas redeeming one code, one wins."""
        values = {k: v for k, v in dataclasses.asdict(new).items() if k != "id"}
        values["version"] = old.version + 1
        # Only what ends or moves a token's access is announced: a refresh's rotation is not (it
        # would empty every replica's token cache every few seconds at scale).
        announce = old.status == "active" and (new.status != "active" or new.key_id != old.key_id)
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(
                update(gateway_grants)
                .where(gateway_grants.c.id == old.id, gateway_grants.c.version == old.version)
                .values(**values)
            )
            if announce and result.rowcount:
                await self._bump_credentials(conn, _GRANTS_VERSION)
        return bool(result.rowcount)

    async def revoke_grants(self, user_id: str, at: float) -> int:
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(
                update(gateway_grants)
                .where(gateway_grants.c.user_id == user_id, gateway_grants.c.status != "revoked")
                .values(status="revoked", revoked_at=at, version=gateway_grants.c.version + 1)
            )
            if result.rowcount:
                await self._bump_credentials(conn, _GRANTS_VERSION)
        return int(result.rowcount)

    async def grants_of(self, user_id: str) -> list[GatewayGrant]:
        c = gateway_grants.c
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(gateway_grants).where(c.user_id == user_id).order_by(c.created_at.desc()))
            ).all()
        return [GatewayGrant(**r._mapping) for r in rows]

    async def create_client(self, client: OAuthClient, *, most: int, most_from_address: int, since: float) -> bool:
        c = oauth_clients.c
        # Counted and inserted in one transaction under the write lock (this process); on
        # PostgreSQL also under a transaction-level advisory lock, so replicas registering at once
        # count one after another (READ COMMITTED alone lets each count before any inserts, and
        # each pass the bound). SQLite serves one process (replicas need PostgreSQL): the write lock is enough.
        async with self._write_lock, self.engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLIENTS_LOCK})
            total = (await conn.execute(select(func.count()).select_from(oauth_clients))).scalar_one()
            recent = (
                await conn.execute(select(func.count()).where(c.address == client.address, c.created_at >= since))
            ).scalar_one()
            if total >= most and recent < most_from_address:
                # Full: registrations that never led to a sign-in and are older than a day go first
                # (a flood of registrations never gets a grant), so the bound cannot lock clients out.
                used = select(gateway_grants.c.client_id).where(gateway_grants.c.client_id.is_not(None))
                stale = c.created_at < client.created_at - _STALE_CLIENT_S
                await conn.execute(oauth_clients.delete().where(stale, c.client_id.not_in(used)))
                total = (await conn.execute(select(func.count()).select_from(oauth_clients))).scalar_one()
            if total >= most or recent >= most_from_address:
                return False
            row = dataclasses.asdict(client) | {"redirect_uris": list(client.redirect_uris)}
            await conn.execute(insert(oauth_clients).values(**row))
        return True

    async def client_by_id(self, client_id: str) -> OAuthClient | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(oauth_clients).where(oauth_clients.c.client_id == client_id))).first()
        if row is None:
            return None
        data = dict(row._mapping)
        return OAuthClient(**(data | {"redirect_uris": tuple(data["redirect_uris"])}))

    async def insert_agent_metrics(self, rows: list[AgentMetric]) -> None:
        if not rows:
            return
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(insert(agent_metrics), [dataclasses.asdict(r) for r in rows])

    async def agent_totals(self, key_ids: list[str], since: datetime) -> dict[str, tuple[int, int]]:
        """key id -> (pico-dollars, tokens) its signed-in agents reported since `since` (one
        grouped read over agent_metrics' points, as the spend report sums them)."""
        if not key_ids:
            return {}
        m = agent_metrics.c
        cost = func.sum(case((m.metric.in_(AGENT_COST_METRICS), m.value), else_=0.0))
        tokens = func.sum(case((m.metric.in_(AGENT_TOKEN_METRICS), m.value), else_=0.0))
        stmt = (
            select(m.virtual_key_id, cost, tokens)
            .where(
                m.virtual_key_id.in_(key_ids), m.ts >= since, m.metric.in_((*AGENT_COST_METRICS, *AGENT_TOKEN_METRICS))
            )
            .group_by(m.virtual_key_id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {str(k): (round(float(usd or 0) * 10**12), int(count or 0)) for k, usd, count in rows}

    async def agent_metrics(self, user_id: str, since: datetime) -> list[AgentMetric]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(agent_metrics)
                    .where(agent_metrics.c.user_id == user_id, agent_metrics.c.ts >= since)
                    .order_by(agent_metrics.c.ts, agent_metrics.c.id)
                )
            ).all()
        return [
            AgentMetric(
                _utc(r.ts) or r.ts, r.user_id, r.virtual_key_id, r.service, r.metric, r.attributes, r.value, r.unit
            )
            for r in rows
        ]

    async def first_seen(self, name: str, now: int) -> int:
        async with self._write_lock, self.engine.begin() as conn:
            value = (await conn.execute(select(meta.c.value).where(meta.c.name == name))).scalar()
            if value is None:
                await conn.execute(insert(meta).values(name=name, value=now))
                return now
        return int(value)

    async def meta_value(self, name: str) -> int | None:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(meta.c.value).where(meta.c.name == name))).scalar()
        return None if value is None else int(value)

    async def swap_meta(self, name: str, expected: int, value: int) -> bool:
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(
                update(meta).where(meta.c.name == name, meta.c.value == expected).values(value=value)
            )
        return bool(result.rowcount)

    async def _bump_credentials(self, conn: Any, name: str) -> None:
        self.credentials_generation += 1
        await _bump(conn, name)

    async def credentials_version(self) -> int:
        """keys_version + grants_version in one read: both only grow, so the sum moves with either."""
        query = select(func.coalesce(func.sum(meta.c.value), 0)).where(
            meta.c.name.in_((_KEYS_VERSION, _GRANTS_VERSION))
        )
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return int(value or 0)

    async def keys_version(self) -> int:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(meta.c.value).where(meta.c.name == _KEYS_VERSION))).scalar()
        return int(value or 0)

    # -- live governance configuration -------------------------------------------------------
    async def list_objects(self) -> list[ConfigObject]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(config_objects).order_by(config_objects.c.kind, config_objects.c.id))
            ).all()
        return [ConfigObject(r.kind, r.id, r.body, r.source) for r in rows]

    async def put_object(self, obj: ConfigObject, actor: str) -> ConfigEvent | None:
        async with self._write_lock, self.engine.begin() as conn:
            return await self._put(conn, obj, actor, datetime.now(UTC))

    async def _put(self, conn: Any, obj: ConfigObject, actor: str, now: datetime) -> ConfigEvent | None:
        where = (config_objects.c.kind == obj.kind, config_objects.c.id == obj.id)
        row = (await conn.execute(select(config_objects.c.body).where(*where))).first()
        before = row.body if row else None
        if before == obj.body:
            return None
        values = {"body": obj.body, "source": obj.source, "updated_at": now}
        if row is None:
            await conn.execute(insert(config_objects).values(kind=obj.kind, id=obj.id, **values))
        else:
            await conn.execute(update(config_objects).where(*where).values(**values))
        event = ConfigEvent(now, actor, obj.kind, obj.id, "update" if row else "create", before, obj.body)
        await self._record_event(conn, event)
        return event

    async def delete_object(self, kind: str, object_id: str, actor: str) -> ConfigEvent | None:
        async with self._write_lock, self.engine.begin() as conn:
            return await self._delete(conn, kind, object_id, actor, datetime.now(UTC))

    async def _delete(self, conn: Any, kind: str, object_id: str, actor: str, now: datetime) -> ConfigEvent | None:
        where = (config_objects.c.kind == kind, config_objects.c.id == object_id)
        row = (await conn.execute(select(config_objects.c.body).where(*where))).first()
        if row is None:
            return None
        await conn.execute(config_objects.delete().where(*where))
        event = ConfigEvent(now, actor, kind, object_id, "delete", row.body, None)
        await self._record_event(conn, event)
        return event

    async def apply_objects(
        self, put: list[ConfigObject], delete: list[tuple[str, str]], actor: str
    ) -> list[ConfigEvent]:
        now = datetime.now(UTC)
        events: list[ConfigEvent] = []
        async with self._write_lock, self.engine.begin() as conn:  # one transaction: all or nothing
            for kind, object_id in delete:
                if (event := await self._delete(conn, kind, object_id, actor, now)) is not None:
                    events.append(event)
            for obj in put:
                if (event := await self._put(conn, obj, actor, now)) is not None:
                    events.append(event)
        return events

    async def record_event(self, event: ConfigEvent) -> None:
        async with self._write_lock, self.engine.begin() as conn:
            await self._record_event(conn, event)

    async def _record_event(self, conn: Any, event: ConfigEvent) -> None:
        await conn.execute(insert(config_events).values(**dataclasses.asdict(event)))
        await _bump(conn, _CONFIG_VERSION)

    async def config_version(self) -> int:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(meta.c.value).where(meta.c.name == _CONFIG_VERSION))).scalar()
        return int(value or 0)

    async def config_events(self, limit: int = 100) -> list[ConfigEvent]:
        query = select(config_events).order_by(config_events.c.seq.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ConfigEvent(_utc(r.ts) or r.ts, r.actor, r.kind, r.object_id, r.action, r.before, r.after) for r in rows
        ]

    # -- audit log ---------------------------------------------------------------------------
    async def append_audit(self, records: list[AuditRecord]) -> None:
        if self._fast is not None:
            await self._fast.insert(self._audit_shape.sql, self._audit_shape.rows(records))
            return
        if self._plain and not self.is_sqlite:
            await self._insert_plain(self._audit_shape.sql, self._audit_shape.rows(records))
            return
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(insert(audit_log), [_shallow_dict(r) for r in records])
        self._counted(len(records))

    async def _insert_plain(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            async with self._write_lock, self.engine.begin() as conn:
                await conn.exec_driver_sql(sql, rows)
            self._counted(len(rows))

    def _counted(self, rows: int) -> None:
        self._commits += 1
        self._rows += rows

    def write_counts(self) -> tuple[int, int]:
        fast = (self._fast.commits, self._fast.rows) if self._fast is not None else (0, 0)
        return self._commits + fast[0], self._rows + fast[1]

    async def last_audit(self) -> AuditRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(1))).first()
        return _audit_from_row(row._mapping) if row else None

    async def audit_records(self, since_seq: int = 0) -> AsyncIterator[AuditRecord]:
        after = since_seq - 1
        while True:
            query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(1000)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            for row in rows:
                yield _audit_from_row(row._mapping)
            after = rows[-1].seq

    async def prune_audit(
        self, before: datetime, anchor_for: Callable[[AuditRecord], tuple[dict[str, Any], str]]
    ) -> int:
        async with self._write_lock, self.engine.begin() as conn:
            newest = (await conn.execute(select(func.max(audit_log.c.seq)))).scalar()
            row = (
                await conn.execute(
                    select(audit_log)
                    .where(audit_log.c.ts < before, audit_log.c.seq < (newest or 0))
                    .order_by(audit_log.c.seq.desc())
                    .limit(1)
                )
            ).first()
            if row is None:
                return 0
            last = _audit_from_row(row._mapping)
            anchor, seal = anchor_for(last)
            await conn.execute(audit_anchor.delete())
            await conn.execute(insert(audit_anchor).values(id=1, anchor=anchor, seal=seal))
            result = await conn.execute(audit_log.delete().where(audit_log.c.seq <= last.seq))
            return int(result.rowcount or 0)

    async def audit_anchor(self) -> tuple[dict[str, Any], str] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(audit_anchor.c.anchor, audit_anchor.c.seal))).first()
        return (dict(row[0]), str(row[1])) if row else None

    async def export_position(self, exporter: str) -> tuple[int, int]:
        query = select(audit_export_state.c.last_seq, audit_export_state.c.failures).where(
            audit_export_state.c.exporter == exporter
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def set_export_position(self, exporter: str, last_seq: int, failures: int, holder: str | None = None) -> bool:
        now = datetime.now(UTC)
        where = audit_export_state.c.exporter == exporter
        if holder is not None:
            where = where & (audit_export_state.c.lease_holder == holder)
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(
                update(audit_export_state).where(where).values(last_seq=last_seq, failures=failures, updated_at=now)
            )
            if result.rowcount:
                return True
            if holder is not None:
                return False  # the lease is another's (taking it made the row)
            await conn.execute(
                insert(audit_export_state).values(
                    exporter=exporter, last_seq=last_seq, failures=failures, updated_at=now
                )
            )
            return True

    async def take_export_lease(self, exporter: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        state = audit_export_state.c
        free = or_(state.lease_holder.is_(None), state.lease_holder == holder, state.lease_until < now_ms)
        async with self.engine.connect() as conn:  # a replica that waits reads, and writes nothing
            row = (
                await conn.execute(select(state.lease_holder, state.lease_until).where(state.exporter == exporter))
            ).first()
        if row is not None and row[0] not in (None, holder) and row[1] is not None and row[1] >= now_ms:
            return False
        try:
            async with self._write_lock, self.engine.begin() as conn:
                # One conditional UPDATE: the database decides between two processes racing for it.
                result = await conn.execute(
                    update(audit_export_state)
                    .where(state.exporter == exporter, free)
                    .values(lease_holder=holder, lease_until=now_ms + ttl_ms)
                )
                if result.rowcount:
                    return True
                exists = (await conn.execute(select(state.exporter).where(state.exporter == exporter))).first()
                if exists is not None:
                    return False  # held by another, not lapsed
                await conn.execute(
                    insert(audit_export_state).values(
                        exporter=exporter, last_seq=0, failures=0, updated_at=datetime.now(UTC),
                        lease_holder=holder, lease_until=now_ms + ttl_ms,
                    )
                )  # fmt: skip
                return True
        except IntegrityError:  # another process made the row first: it holds the lease
            return False

    async def release_export_lease(self, exporter: str, holder: str) -> None:
        state = audit_export_state.c
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(
                update(audit_export_state)
                .where(state.exporter == exporter, state.lease_holder == holder)
                .values(lease_holder=None, lease_until=None)
            )

    async def dead_letter(self, exporter: str, first_seq: int, last_seq: int, error: str) -> None:
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(
                insert(audit_dead_letters).values(
                    exporter=exporter, first_seq=first_seq, last_seq=last_seq, error=error[:2000], ts=datetime.now(UTC)
                )
            )

    # -- request log ------------------------------------------------------------------------
    async def insert_requests(self, entries: list[RequestLogEntry]) -> None:
        """Stores the entries (any already there are left as they are) and adds the new ones to
        their sessions' ledger rows, in one transaction."""
        deltas = fold(await self._not_logged(entries))
        if self._fast is not None:
            ops = [(self._requests_shape.sql, self._requests_shape.rows(entries))]
            if deltas:
                ops += [(self._session_sql, session_rows(deltas, sqlite_ts)), (self._item_sql, item_rows(deltas))]
            await self._fast.insert_together(ops, deferrable=True)
            return
        if self._plain:
            async with self._write_lock, self.engine.begin() as conn:
                await conn.exec_driver_sql(self._requests_shape.sql, self._requests_shape.rows(entries))
                await self._add_to_sessions(conn, deltas)
            self._counted(len(entries))
            return
        await self._insert_once(request_log, [_shallow_dict(e) for e in entries], deltas)

    async def _not_logged(self, entries: list[RequestLogEntry]) -> list[RequestLogEntry]:
        """The entries of a session that the log does not hold yet: a batch written again (a retry
        after a commit whose answer was lost, a spill replayed) adds nothing to the ledger twice.
        Exact because one writer writes a given request id at a time (its recorder, in turn)."""
        mine = [e for e in entries if e.session_id and e.virtual_key_id]
        if not mine:
            return []
        ids = [e.request_id for e in mine]
        there: set[str] = set()
        async with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                if self._plain:  # the driver's own statement: no compilation of 500 bound parameters
                    marks = ", ".join("?" if self.is_sqlite else f"${n}" for n in range(1, len(chunk) + 1))
                    sql = f"SELECT request_id FROM request_log WHERE request_id IN ({marks})"
                    found = (await conn.exec_driver_sql(sql, tuple(chunk))).all()
                else:
                    found = (
                        await conn.execute(select(request_log.c.request_id).where(request_log.c.request_id.in_(chunk)))
                    ).all()
                there.update(r[0] for r in found)
        return [e for e in mine if e.request_id not in there] if there else mine

    async def _add_to_sessions(self, conn: Any, deltas: list[SessionDelta]) -> None:
        if not deltas:
            return
        if self._plain:
            ts: Any = sqlite_ts if self.is_sqlite else (lambda moment: moment)
            await conn.exec_driver_sql(self._session_sql, session_rows(deltas, ts))
            if items := item_rows(deltas):
                await conn.exec_driver_sql(self._item_sql, items)
            return
        names = [c.name for c in agent_session.columns]
        stamps = [bindparam(n, type_=DateTime(timezone=True)) for n in ("started_at", "ended_at")]
        rows = [dict(zip(names, r, strict=True)) for r in session_rows(deltas, lambda moment: moment)]
        await conn.execute(text(self._session_sql).bindparams(*stamps), rows)
        if items := item_rows(deltas):
            item_names = [c.name for c in agent_session_item.columns]
            await conn.execute(text(self._item_sql), [dict(zip(item_names, r, strict=True)) for r in items])

    # -- the session ledger ------------------------------------------------------------------
    async def list_sessions(self, query: SessionQuery) -> list[dict[str, Any]]:
        return await self.sessions.page(query)

    async def get_session(self, ledger_id: str) -> dict[str, Any] | None:
        return await self.sessions.get(ledger_id)

    async def session_requests(
        self, virtual_key_id: str, session_id: str, limit: int = 1000, offset: int = 0
    ) -> list[dict[str, Any]]:
        return await self.sessions.requests(virtual_key_id, session_id, limit, offset)

    async def session_spend(self, group_by: tuple[str, ...], query: SessionQuery) -> list[dict[str, Any]]:
        return await self.sessions.spend(group_by, query)

    async def _insert_once(self, table: Any, rows: list[dict[str, Any]], deltas: Sequence[SessionDelta] = ()) -> None:
        """Inserts rows, skipping any whose primary key exists: a replay never counts twice."""
        if not rows:
            return
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)
            await self._add_to_sessions(conn, list(deltas))
        self._counted(len(rows))

    # -- spend ledger -----------------------------------------------------------------------
    async def record_spend(self, rows: list[SpendRow]) -> None:
        if self._fast is not None:
            await self._fast.insert(self._spend_shape.sql, self._spend_shape.rows(rows))
            return
        if self._plain:
            await self._insert_plain(self._spend_shape.sql, self._spend_shape.rows(rows))
            return
        await self._insert_once(spend_ledger, [_shallow_dict(r) for r in rows])

    async def spend_totals(self, scope: str, scope_id: str, start: datetime, end: datetime) -> tuple[int, int, int]:
        column = {
            "virtual_key": spend_ledger.c.virtual_key_id,
            "team": spend_ledger.c.team_id,
            "customer": spend_ledger.c.customer_id,
        }[scope]
        query = select(
            func.coalesce(func.sum(spend_ledger.c.cost_pico), 0),
            func.coalesce(func.sum(spend_ledger.c.tokens), 0),
            func.count(),
        ).where(column == scope_id, spend_ledger.c.ts >= start, spend_ledger.c.ts < end)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), int(row[1]), int(row[2])

    async def spend_since(self, since: datetime) -> list[SpendRow]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(spend_ledger).where(spend_ledger.c.ts >= since))).all()
        return [SpendRow(**{**r._mapping, "ts": _utc(r._mapping["ts"])}) for r in rows]

    async def recent_requests(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(request_log).order_by(request_log.c.ts.desc()).limit(limit))).all()
        return [dict(r._mapping) for r in rows]

    async def count_requests(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(request_log))).scalar() or 0)

    async def query_requests(self, query: RequestQuery) -> list[dict[str, Any]]:
        stmt = select(request_log)
        if query.owner_user_id is not None:
            stmt = stmt.join(virtual_keys, virtual_keys.c.id == request_log.c.virtual_key_id)
        stmt = stmt.where(*_request_filters(query)).order_by(request_log.c.ts.desc(), request_log.c.request_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt.limit(query.limit).offset(query.offset))).all()
        return [{**r._mapping, "ts": _utc(r._mapping["ts"])} for r in rows]

    async def logged_requests(
        self,
        since: datetime,
        until: datetime | None = None,
        batch: int = 10_000,
        *,
        keys: frozenset[str] | None = None,
        other_keys: bool = False,
    ) -> AsyncIterator[list[LoggedRequest]]:
        # Keyset pages over (ts, request_id): each page is one short query, so no read holds a
        # connection (or SQLite's snapshot) for the whole replay, and no page is skipped or repeated.
        if self.is_sqlite:
            pages = self._sqlite_logged(since, until, batch, keys, other_keys)
        else:
            pages = self._core_logged(since, until, batch, keys, other_keys)
        async for page in pages:
            yield page

    async def _core_logged(
        self, since: datetime, until: datetime | None, batch: int, keys: frozenset[str] | None, other_keys: bool
    ) -> AsyncIterator[list[LoggedRequest]]:
        c = request_log.c
        columns = [c[name] for name in LoggedRequest._fields]
        where = [c.ts >= since] + ([c.ts < until] if until is not None else [])
        if keys is not None:
            chosen = sorted(keys)
            where.append(or_(c.virtual_key_id.is_(None), c.virtual_key_id.notin_(chosen)) if other_keys
                         else c.virtual_key_id.in_(chosen))  # fmt: skip
        after: tuple[datetime, str] | None = None
        make = LoggedRequest._make
        while True:
            stmt = select(*columns).where(*where)
            if after is not None:  # `ts >= last` too: the index range starts there, not at `since`
                stmt = stmt.where(
                    c.ts >= after[0], or_(c.ts > after[0], and_(c.ts == after[0], c.request_id > after[1]))
                )
            async with self.engine.connect() as conn:
                rows = (await conn.execute(stmt.order_by(c.ts, c.request_id).limit(batch))).all()
            if not rows:
                return
            yield [make(row) for row in rows]
            if len(rows) < batch:
                return
            after = (rows[-1].ts, rows[-1].request_id)

    async def _sqlite_logged(
        self, since: datetime, until: datetime | None, batch: int, keys: frozenset[str] | None, other_keys: bool
    ) -> AsyncIterator[list[LoggedRequest]]:
        """The same pages in SQLite's own terms, read by the sqlite3 module in a worker thread
        over a read-only connection (a replay reads millions of rows: SQLAlchemy's per-value
        processing would cost more than the replay itself). Timestamps are stored as text in one
        format, so they compare as text and parse with `fromisoformat`."""
        path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
        if not path or path == ":memory:" or path.startswith("file:") or "?" in path:
            async for page in self._core_logged(since, until, batch, keys, other_keys):
                yield page
            return
        sql = f"SELECT {', '.join(LoggedRequest._fields)} FROM request_log WHERE ts >= ?"
        bounds: list[Any] = [_sqlite_time(since)]
        if until is not None:
            sql += " AND ts < ?"
            bounds.append(_sqlite_time(until))
        if keys is not None:  # one JSON parameter, however many keys (SQLite caps a statement's parameters)
            chosen = "virtual_key_id IN (SELECT value FROM json_each(?))"
            sql += f" AND (virtual_key_id IS NULL OR NOT {chosen})" if other_keys else f" AND {chosen}"
            bounds.append(json.dumps(sorted(keys)))
        first = sql + " ORDER BY ts, request_id LIMIT ?"
        # `ts >= ?` again with the last page's time, so the index range starts there rather than
        # at `since` (the OR alone would make every page walk the log from the start).
        more = sql + " AND ts >= ? AND (ts > ? OR (ts = ? AND request_id > ?)) ORDER BY ts, request_id LIMIT ?"
        after: tuple[str, str] | None = None
        while True:
            if after is None:
                query, params = first, (*bounds, batch)
            else:
                query, params = more, (*bounds, after[0], after[0], after[0], after[1], batch)
            page, after = await asyncio.to_thread(_read_sqlite_page, path, query, params)
            if not page:
                return
            yield page
            if len(page) < batch:
                return

    async def spend_report(self, group_by: str, query: RequestQuery) -> list[dict[str, Any]]:
        group = {
            "key": request_log.c.virtual_key_id,
            "user": virtual_keys.c.user_id,
            "team": request_log.c.team_id,
            "model": request_log.c.model,
            "day": func.date(request_log.c.ts),  # date() reads a timestamp in SQLite and PostgreSQL alike
        }[group_by].label("group")
        cost = func.coalesce(func.sum(request_log.c.cost_pico), 0).label("cost_pico")
        tokens = func.coalesce(func.sum(request_log.c.input_tokens + request_log.c.output_tokens), 0).label("tokens")
        # What the guardrails decided: decisions in all, requests with one, requests a rule blocked.
        decisions = func.coalesce(func.sum(request_log.c.guardrails), 0)
        guarded = func.coalesce(func.sum(case((request_log.c.guardrails > 0, 1), else_=0)), 0)
        blocked = func.coalesce(func.sum(case((request_log.c.error_kind == GUARDRAIL_BLOCKED, 1), else_=0)), 0)
        stmt = select(group, cost, tokens, func.count().label("requests"), decisions, guarded, blocked)
        stmt = stmt.select_from(request_log)
        if group_by == "user" or query.owner_user_id is not None:
            stmt = stmt.outerjoin(virtual_keys, virtual_keys.c.id == request_log.c.virtual_key_id)
        stmt = stmt.where(*_request_filters(query)).group_by(group).order_by(cost.desc(), group)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt.limit(query.limit).offset(query.offset))).all()
        report = [
            {
                "group": None if r[0] is None else str(r[0]),
                "cost_pico": int(r[1]),
                "tokens": int(r[2]),
                "requests": r[3],
                "guardrail_decisions": int(r[4]),
                "guarded_requests": int(r[5]),
                "guardrail_blocks": int(r[6]),
            }
            for r in rows
        ]
        return report + await self._agent_spend(group_by, query, report)

    async def _agent_spend(
        self, group_by: str, query: RequestQuery, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Beside each row, what the person's agents reported themselves over OTLP (agent_metrics:
        Claude Code's cost.usage and token.usage), so usage that did not go through the gateway is
        visible; a group only the agents reported is a row of its own. By key, user or day only:
        the points carry neither team nor (in a column) model."""
        for each in rows:
            each["agent_cost_pico"] = each["agent_tokens"] = 0
        if group_by not in AGENT_GROUPS or query.team_ids is not None:
            return []
        m = agent_metrics.c
        group = {"key": m.virtual_key_id, "user": m.user_id, "day": func.date(m.ts)}[group_by].label("group")
        cost = func.sum(case((m.metric.in_(AGENT_COST_METRICS), m.value), else_=0.0))
        tokens = func.sum(case((m.metric.in_(AGENT_TOKEN_METRICS), m.value), else_=0.0))
        where: list[Any] = [m.metric.in_((*AGENT_COST_METRICS, *AGENT_TOKEN_METRICS))]
        if query.since is not None:
            where.append(m.ts >= query.since)
        if query.until is not None:
            where.append(m.ts < query.until)
        if query.virtual_key_ids is not None:
            where.append(m.virtual_key_id.in_(query.virtual_key_ids))
        if query.owner_user_id is not None:
            where.append(m.user_id == query.owner_user_id)
        stmt = select(group, cost, tokens).where(*where).group_by(group).order_by(group).limit(query.limit)
        async with self.engine.connect() as conn:
            found = (await conn.execute(stmt)).all()
        by_group = {each["group"]: each for each in rows}
        extra: list[dict[str, Any]] = []
        for name, usd, count in found:
            key = None if name is None else str(name)
            row = by_group.get(key)
            if row is None:  # the agents reported it, the gateway never saw it
                row = {"group": key, "cost_pico": 0, "tokens": 0, "requests": 0}
                row |= {"guardrail_decisions": 0, "guarded_requests": 0, "guardrail_blocks": 0}
                extra.append(row)
            row["agent_cost_pico"] = round(float(usd or 0) * 10**12)
            row["agent_tokens"] = int(count or 0)
        return extra if query.offset == 0 else []


AGENT_GROUPS = ("key", "user", "day")


def _request_filters(query: RequestQuery) -> list[Any]:
    c = request_log.c
    found: list[Any] = []
    if query.since is not None:
        found.append(c.ts >= query.since)
    if query.until is not None:
        found.append(c.ts < query.until)
    if query.virtual_key_ids is not None:
        found.append(c.virtual_key_id.in_(query.virtual_key_ids))
    if query.team_ids is not None:
        found.append(c.team_id.in_(query.team_ids))
    if query.owner_user_id is not None:
        found.append(virtual_keys.c.user_id == query.owner_user_id)
    for column, value in ((c.model, query.model), (c.provider, query.provider), (c.decision, query.decision)):
        if value is not None:
            found.append(column == value)
    if query.status is not None:
        found.append(c.status == query.status)
    if query.session_id is not None:
        found.append(c.session_id == query.session_id)
    return found


_FIELDS: dict[type, tuple[str, ...]] = {}


_TS_AT = LoggedRequest._fields.index("ts")
_STREAM_AT = LoggedRequest._fields.index("stream")


def _read_sqlite_page(path: str, query: str, params: tuple[Any, ...]) -> tuple[list[LoggedRequest], tuple[str, str]]:
    """One page of `logged_requests` and its last (ts, request_id) as stored, for the next page,
    over a connection that cannot write (`mode=ro`)."""
    with contextlib.closing(sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)) as db:
        rows = db.execute(query, params).fetchall()
    if not rows:
        return [], ("", "")
    parse, make, page = datetime.fromisoformat, LoggedRequest._make, []
    for row in rows:
        values = list(row)
        values[_TS_AT] = parse(values[_TS_AT]).replace(tzinfo=UTC)
        values[_STREAM_AT] = bool(values[_STREAM_AT])
        page.append(make(values))
    return page, (rows[-1][_TS_AT], rows[-1][0])


def _sqlite_time(value: datetime) -> str:
    """A time as the SQLite store writes it (UTC, no offset, microseconds)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _shallow_dict(record: Any) -> dict[str, Any]:
    """dataclasses.asdict deep-copies every value; rows only need the top level."""
    names = _FIELDS.get(type(record))
    if names is None:
        names = _FIELDS[type(record)] = tuple(f.name for f in dataclasses.fields(record))
    return {name: getattr(record, name) for name in names}


async def _bump(conn: Any, name: str) -> None:
    result = await conn.execute(update(meta).where(meta.c.name == name).values(value=meta.c.value + 1))
    if not result.rowcount:
        await conn.execute(insert(meta).values(name=name, value=1))


def _audit_from_row(row: Any) -> AuditRecord:
    return AuditRecord(
        int(row["seq"]),
        _utc(row["ts"]) or row["ts"],
        row["kind"],
        row["actor"],
        row["data"],
        row["key_id"],
        row["prev_mac"],
        row["mac"],
    )


def _key_to_row(key: VirtualKey, now: datetime) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "key_hash": key.key_hash,
        "key_hint": key.key_hint,
        "team_id": key.team_id,
        "customer_id": key.customer_id,
        "is_active": key.is_active,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "grants": [dataclasses.asdict(g) for g in key.grants],
        "fallbacks": list(key.fallbacks),
        "mcp": {
            "tools": list(key.mcp_tools),
            "tool_groups": list(key.mcp_tool_groups),
            "resources": list(key.mcp_resources),
            "prompts": list(key.mcp_prompts),
        },
        "user_id": key.user_id,
        "profile_id": key.profile_id,
        "previous_key_hash": key.previous_key_hash,
        "previous_valid_until": key.previous_valid_until,
        "source": key.source,
        "updated_at": now,
    }


def _key_from_row(row: Any) -> VirtualKey:
    return VirtualKey(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        key_hash=row["key_hash"],
        key_hint=row["key_hint"],
        team_id=row["team_id"],
        customer_id=row["customer_id"],
        is_active=row["is_active"],
        expires_at=_utc(row["expires_at"]),
        revoked_at=_utc(row["revoked_at"]),
        grants=tuple(
            ProviderGrant(g["provider"], float(g.get("weight", 1.0)), tuple(g.get("allowed_models") or ()))
            for g in row["grants"]
        ),
        source=row["source"],
        created_at=_utc(row["created_at"]),
        fallbacks=tuple(row["fallbacks"] or ()),
        mcp_tools=tuple((row["mcp"] or {}).get("tools") or ()),
        mcp_tool_groups=tuple((row["mcp"] or {}).get("tool_groups") or ()),
        mcp_resources=tuple((row["mcp"] or {}).get("resources") or ()),
        mcp_prompts=tuple((row["mcp"] or {}).get("prompts") or ()),
        user_id=row["user_id"],
        profile_id=row["profile_id"],
        previous_key_hash=row["previous_key_hash"],
        previous_valid_until=_utc(row["previous_valid_until"]),
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _alembic_upgrade(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("sluice.storage").joinpath("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")
