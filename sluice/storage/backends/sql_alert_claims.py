"""Alert claims in the SQL store (a mixin of `SqlStore`): one row per alert, changed only by a
compare-and-set on its token, so two processes racing for a claim (a fresh one, or one left
pending by a process that died) never both get it, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import and_, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.storage.backends.sql_tables import alert_claim
from sluice.storage.records import AlertClaim

PENDING, RECORDED = "pending", "recorded"
DETECTION = "detection:"  # the alert id prefix of a runaway detection's claim (sluice.sessions.runaway)
LEGACY_KEEP_MS = 400 * 86_400_000  # as migration 0019 keeps the claims it copies (their windows are unknown)
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

    async def stale_alert_claims(
        self, before_ms: int, limit: int = 100, *, detections: bool = False
    ) -> list[AlertClaim]:
        ours = _c.alert_id.startswith(DETECTION, autoescape=True)
        query = (
            select(alert_claim)
            .where(
                _c.state == PENDING,
                _c.claimed_ms < before_ms,
                _c.alert.is_not(None),
                ours if detections else ~ours,
            )
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
            legacy = await _prune_legacy(conn, now_ms, before_ms)
            result = await conn.execute(alert_claim.delete().where(where))
        return legacy + int(result.rowcount or 0)


async def _prune_legacy(conn: Any, now_ms: int, before_ms: int) -> int:
    """The claims of the version before 0019 (`alert:<key>` in `sluice_meta`), left there for its
    replicas still serving during a rolling update: each is copied into `alert_claim` if it is not
    there yet (one such replica wrote it after the migration: copied as the migration does), then
    removed once its copy is older than the retention (no replica of that version is left)."""
    await conn.execute(
        text(
            "INSERT INTO alert_claim (key, alert_id, state, token, claimed_ms, keep_until_ms, audit_after) "
            "SELECT substr(m.name, 7), '', CASE WHEN m.value < 0 THEN 'pending' ELSE 'recorded' END, m.value, "
            "CASE WHEN m.value < 0 THEN (-m.value) / 4096 ELSE :now END, :keep, 0 "
            "FROM sluice_meta m WHERE m.name LIKE 'alert:%' "
            "AND NOT EXISTS (SELECT 1 FROM alert_claim c WHERE c.key = substr(m.name, 7))"
        ).bindparams(now=now_ms, keep=now_ms + LEGACY_KEEP_MS)
    )
    result = await conn.execute(
        text(
            "DELETE FROM sluice_meta WHERE name LIKE 'alert:%' AND EXISTS (SELECT 1 FROM alert_claim c "
            "WHERE c.key = substr(sluice_meta.name, 7) AND c.claimed_ms < :before)"
        ).bindparams(before=before_ms)
    )
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
