"""Alert claims in the SQL store (a mixin of `SqlStore`): one row per alert, changed only by a
compare-and-set on its token, so two processes racing for a claim (a fresh one, or one left
pending by a process that died) never both get it, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.storage.backends.sql_tables import alert_claim
from sluice.storage.records import AlertClaim

PENDING, RECORDED = "pending", "recorded"
_c = alert_claim.c


class SqlAlertClaims:
    engine: AsyncEngine
    _write_lock: asyncio.Lock

    async def claim_alert(self, claim: AlertClaim) -> AlertClaim:
        async with self.engine.connect() as conn:  # claimed already (every later check): read only
            row = (await conn.execute(select(alert_claim).where(_c.key == claim.key))).first()
        if row is not None:
            return _claim_of(row._mapping)
        try:
            async with self._write_lock, self.engine.begin() as conn:
                await conn.execute(insert(alert_claim).values(**_row_of(claim)))
            return claim
        except IntegrityError:  # another process inserted it first: theirs
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(alert_claim).where(_c.key == claim.key))).first()
            assert row is not None
            return _claim_of(row._mapping)

    async def swap_alert_claim(
        self,
        key: str,
        token: int,
        new_token: int,
        claimed_ms: int,
        state: str,
        alert: dict[str, Any] | None = None,
    ) -> bool:
        values: dict[str, Any] = {"token": new_token, "claimed_ms": claimed_ms, "state": state}
        if alert is not None:
            values["alert"] = alert
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(
                update(alert_claim).where(_c.key == key, _c.token == token, _c.state == PENDING).values(**values)
            )
        return bool(result.rowcount)

    async def stale_alert_claims(self, before_ms: int, limit: int = 100) -> list[AlertClaim]:
        query = (
            select(alert_claim)
            .where(_c.state == PENDING, _c.claimed_ms < before_ms, _c.alert.is_not(None))
            .order_by(_c.claimed_ms)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_claim_of(r._mapping) for r in rows]

    async def prune_alert_claims(self, now_ms: int, before_ms: int) -> int:
        # A pending claim that keeps its alert is never pruned: it is still to be raised.
        done = or_(_c.state == RECORDED, _c.alert.is_(None))
        where = and_(done, _c.claimed_ms < before_ms, _c.keep_until_ms < now_ms)
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(alert_claim.delete().where(where))
        return int(result.rowcount or 0)


def _row_of(claim: AlertClaim) -> dict[str, Any]:
    return {
        "key": claim.key,
        "alert_id": claim.alert_id,
        "state": claim.state,
        "token": claim.token,
        "claimed_ms": claim.claimed_ms,
        "keep_until_ms": claim.keep_until_ms,
        "audit_after": claim.audit_after,
        "alert": claim.alert,
    }


def _claim_of(row: Any) -> AlertClaim:
    alert = row["alert"]
    return AlertClaim(
        str(row["key"]),
        str(row["alert_id"]),
        str(row["state"]),
        int(row["token"]),
        int(row["claimed_ms"]),
        int(row["keep_until_ms"]),
        int(row["audit_after"]),
        dict(alert) if alert is not None else None,
    )
