"""Retention of what Sluice keeps, one period per kind of data, and erasure of one person's
captured content on request (GDPR Art. 17).

- Captured prompts and answers (`retention.content_days`) are *tombstoned*: the content is replaced
  by `{"erased": true, "sha256": <digest of the content>, "at", "reason"}`. Content is sealed by
  its digest (audit/chain.py), so the record keeps its MAC and the whole chain still verifies;
  what was erased, when and why is itself an audit record (`data_access`).
- Request-log metadata (`retention.request_log_days`) is deleted row by row, and with it its part
  of the session ledger (which sums the log): a session is summed again from the rows it keeps,
  and goes with its last row.
- One person's erasure also blanks their identifiers in the request log and the session ledger:
  the end-user id their client sent and the working directory it reported.
- Audit records (`audit.retention_days`) are pruned as before, behind a sealed anchor.

Content captured before content was sealed by digest cannot be tombstoned without breaking its
record's MAC: it is left in place and counted as `legacy`, and goes with its record when
`audit.retention_days` prunes it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sluice.audit.chain import CONTENT_SEALING, content_digest, is_tombstone
from sluice.audit.log import AuditLog
from sluice.settings import SluiceConfig
from sluice.storage.ports import AuditStore, KeyStore
from sluice.storage.records import AuditRecord
from sluice.storage.retention import RetentionStore

log = logging.getLogger("sluice.retention")

_BATCH = 500


@dataclass
class Erased:
    records: list[int] = field(default_factory=list)  # sequence numbers tombstoned
    legacy: int = 0  # content sealed whole (before digests), left in place
    log_rows: int = 0  # request-log rows whose end-user id and working directory were blanked
    sessions: int = 0  # sessions of the ledger blanked or summed again


def tombstone(content: Any, at: datetime, reason: str) -> dict[str, Any]:
    return {"erased": True, "sha256": content_digest(content), "at": at.isoformat(), "reason": reason}


def _erasable(record: AuditRecord) -> bool | None:
    """True: sealed by digest, content present; None: content sealed whole; False: nothing to erase."""
    data = record.data
    if not isinstance(data, dict) or "content" not in data or is_tombstone(data["content"]):
        return False
    return True if data.get("content_sealing") == CONTENT_SEALING else None


class _Store(AuditStore, KeyStore, Protocol):
    pass


class Retention:
    def __init__(self, config: SluiceConfig, store: _Store, backend: RetentionStore, audit: AuditLog) -> None:
        self._config = config
        self._store = store
        self._backend = backend
        self._audit = audit
        self._content_scanned = 0  # records up to here hold no content older than the last cutoff

    async def _tombstone(self, pick: Any, reason: str, *, stop_at: datetime | None = None) -> Erased:
        now = datetime.now(UTC)
        out = Erased()
        batch: list[tuple[int, str, dict[str, Any]]] = []
        since = self._content_scanned + 1 if stop_at is not None else 0
        async for record in self._store.audit_records(since):
            if stop_at is not None and record.ts >= stop_at:
                break
            if stop_at is not None:
                self._content_scanned = record.seq
            if not pick(record):
                continue
            verdict = _erasable(record)
            if verdict is None:
                out.legacy += 1
            elif verdict:
                data = {**record.data, "content": tombstone(record.data["content"], now, reason)}
                batch.append((record.seq, record.mac, data))
                out.records.append(record.seq)
            if len(batch) >= _BATCH:
                await self._backend.replace_audit_data(batch)
                batch = []
        if batch:
            await self._backend.replace_audit_data(batch)
        return out

    async def erase_person(
        self,
        *,
        user: str | None = None,
        key: str | None = None,
        end_user: str | None = None,
        actor: str,
        reason: str = "erasure request",
    ) -> Erased:
        """Tombstones every captured prompt and answer of a person, and records the erasure:
        `user` is a Sluice user (every key, revoked ones too, whose `user_id` it is), `key` one
        virtual key, `end_user` the end-user id agents sent in their requests (`metadata.user_id`,
        `user`): caller-supplied, so it only adds to the others. The same people's end-user ids
        and working directories are blanked in the request log and the session ledger. Copies
        already sent to exporters are not reached."""
        if user is None and key is None and end_user is None:
            raise ValueError("name the user, the virtual key or the end user whose content to erase")
        keys = {key} if key is not None else set()
        if user is not None:
            keys |= {k.id for k in await self._store.list_keys() if k.user_id == user}

        def theirs(record: AuditRecord) -> bool:
            data = record.data if isinstance(record.data, dict) else {}
            return data.get("virtual_key") in keys or (end_user is not None and data.get("user") == end_user)

        erased = await self._tombstone(theirs, "erasure")
        erased.log_rows, erased.sessions = await self._backend.erase_identifiers(keys, end_user)
        await self._audit.append(
            "data_access",
            actor,
            {
                "action": "content_erasure",
                "user": user,
                "virtual_keys": sorted(keys),
                "end_user": end_user,
                "reason": reason,
                "records": erased.records,
                "legacy_left": erased.legacy,
                "request_log_rows": erased.log_rows,
                "sessions": erased.sessions,
            },
        )
        return erased

    async def expire_content(self, keep_days: int, actor: str = "retention") -> Erased:
        cutoff = datetime.now(UTC) - timedelta(days=keep_days)
        erased = await self._tombstone(lambda record: True, "retention", stop_at=cutoff)
        if erased.records or erased.legacy:
            await self._audit.append(
                "data_access",
                actor,
                {
                    "action": "content_retention",
                    "keep_days": keep_days,
                    "records": len(erased.records),
                    "first_seq": erased.records[0] if erased.records else None,
                    "last_seq": erased.records[-1] if erased.records else None,
                    "legacy_left": erased.legacy,
                },
            )
        return erased

    async def expire_requests(self, keep_days: int, actor: str = "retention") -> int:
        removed = await self._backend.delete_requests_before(datetime.now(UTC) - timedelta(days=keep_days))
        if removed:
            await self._audit.append(
                "data_access", actor, {"action": "request_log_retention", "keep_days": keep_days, "rows": removed}
            )
        return removed

    async def run_once(self, actor: str = "retention") -> dict[str, int]:
        """Applies every configured period once; returns what each removed."""
        cfg = self._config.retention
        done = {"content": 0, "content_legacy": 0, "request_log": 0}
        if cfg.content_days is not None and self._audit.enabled:
            erased = await self.expire_content(cfg.content_days, actor)
            done["content"], done["content_legacy"] = len(erased.records), erased.legacy
        if cfg.request_log_days is not None:
            done["request_log"] = await self.expire_requests(cfg.request_log_days, actor)
        return done

    async def loop(self, interval_s: float = 86_400) -> None:
        """Once a day (the first time right after start); a failure is logged and retried the next day."""
        while True:
            try:
                done = await self.run_once()
                if any(done.values()):
                    log.info("retention: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
            except Exception:
                log.exception("retention failed")
            await asyncio.sleep(interval_s)
