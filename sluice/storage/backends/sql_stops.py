"""The kill switch's stops in the SQL store (a mixin of `SqlStore`): written with a version bump
in one transaction, so every replica's poll of `stops_version` sees a change at once."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.storage.backends.sql_tables import meta, stops
from sluice.storage.records import Stop

_STOPS_VERSION = "stops_version"


class SqlStops:
    engine: AsyncEngine
    _write_lock: asyncio.Lock

    async def add_stop(self, scope: str, target: str, key_id: str | None, reason: str, actor: str) -> Stop:
        """Throws a stop; when the same one is already in force, returns it unchanged."""
        now = datetime.now(UTC)
        async with self._write_lock, self.engine.begin() as conn:
            found = (await conn.execute(select(stops).where(*_same(scope, target, key_id)))).first()
            if found is not None:
                return _stop_of(found._mapping)
            result = await conn.execute(
                insert(stops).values(
                    scope=scope, target=target, key_id=key_id, reason=reason, actor=actor, created_at=now
                )
            )
            await _bump(conn)
            key = result.inserted_primary_key
            assert key is not None
            stop_id = int(key[0])
        return Stop(stop_id, scope, target, key_id, reason, actor, now)

    async def add_stop_once(
        self, scope: str, target: str, key_id: str | None, reason: str, actor: str
    ) -> tuple[Stop, bool]:
        """Throws a stop unless this very one (same scope, target, key, reason and actor) was ever
        thrown, lifted since or not: redoing a runaway pause after a crash neither doubles it nor
        throws again a pause an admin lifted in between."""
        now = datetime.now(UTC)
        c = stops.c
        same = [c.scope == scope, c.target == target, c.reason == reason, c.actor == actor]
        same.append(c.key_id.is_(None) if key_id is None else c.key_id == key_id)
        async with self._write_lock, self.engine.begin() as conn:
            found = (await conn.execute(select(stops).where(*same).order_by(c.id).limit(1))).first()
            if found is not None:
                return _stop_of(found._mapping), False
            result = await conn.execute(
                insert(stops).values(
                    scope=scope, target=target, key_id=key_id, reason=reason, actor=actor, created_at=now
                )
            )
            await _bump(conn)
            key = result.inserted_primary_key
            assert key is not None
            stop_id = int(key[0])
        return Stop(stop_id, scope, target, key_id, reason, actor, now), True

    async def lift_stops(
        self, scope: str, target: str, key_id: str | None, actor: str, reason: str, *, any_key: bool = False
    ) -> list[Stop]:
        """Lifts the stops in force on exactly this scope and target (for a session: made for
        `key_id`, or for any key with `any_key`); returns them as lifted."""
        now = datetime.now(UTC)
        where = _same(scope, target, None if any_key else key_id, any_key=any_key)
        async with self._write_lock, self.engine.begin() as conn:
            rows = (await conn.execute(select(stops).where(*where))).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            await conn.execute(
                update(stops).where(stops.c.id.in_(ids)).values(lifted_at=now, lifted_by=actor, lift_reason=reason)
            )
            await _bump(conn)
        return [_lifted(_stop_of(r._mapping), now, actor, reason) for r in rows]

    async def list_stops(self, *, active_only: bool = True, limit: int = 1000) -> list[Stop]:
        query = select(stops).order_by(stops.c.id.desc()).limit(limit)
        if active_only:
            query = query.where(stops.c.lifted_at.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_stop_of(r._mapping) for r in rows]

    async def stops_version(self) -> int:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(meta.c.value).where(meta.c.name == _STOPS_VERSION))).scalar()
        return int(value or 0)


def _same(scope: str, target: str, key_id: str | None, *, any_key: bool = False) -> list[Any]:
    where = [stops.c.lifted_at.is_(None), stops.c.scope == scope, stops.c.target == target]
    if not any_key:
        where.append(stops.c.key_id.is_(None) if key_id is None else stops.c.key_id == key_id)
    return where


async def _bump(conn: Any) -> None:
    result = await conn.execute(update(meta).where(meta.c.name == _STOPS_VERSION).values(value=meta.c.value + 1))
    if not result.rowcount:
        await conn.execute(insert(meta).values(name=_STOPS_VERSION, value=1))


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _stop_of(row: Any) -> Stop:
    created = _utc(row["created_at"])
    assert created is not None
    return Stop(
        int(row["id"]),
        row["scope"],
        row["target"],
        row["key_id"],
        row["reason"],
        row["actor"],
        created,
        _utc(row["lifted_at"]),
        row["lifted_by"],
        row["lift_reason"],
    )


def _lifted(stop: Stop, at: datetime, actor: str, reason: str) -> Stop:
    return dataclasses.replace(stop, lifted_at=at, lifted_by=actor, lift_reason=reason)
