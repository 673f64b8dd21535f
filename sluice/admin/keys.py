"""The virtual key lifecycle for the admin API: issue (the secret shown once), change, rotate with
an overlap period, revoke, expire. Every change is recorded as a configuration event of kind
`virtual_key` whose before/after never hold a secret or a hash."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.admin.service import AdminService, Conflict, NotFound
from sluice.governance.keys import generate_secret, hash_secret, hint_of
from sluice.storage.records import ConfigEvent, VirtualKey

KEY_KIND = "virtual_key"


def status_of(key: VirtualKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if not key.is_active:
        return "inactive"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def public_view(key: VirtualKey, now: datetime | None = None) -> dict[str, Any]:
    """Everything about a key but its secret and hashes."""
    now = now or datetime.now(UTC)
    previous_valid = key.previous_valid_until if key.previous_valid_until and key.previous_valid_until > now else None
    return {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "key_hint": key.key_hint,
        "status": status_of(key, now),
        "team_id": key.team_id,
        "customer_id": key.customer_id,
        "user_id": key.user_id,
        "profile_id": key.profile_id,
        "is_active": key.is_active,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "created_at": key.created_at,
        "previous_secret_valid_until": previous_valid,
        "grants": [dataclasses.asdict(g) for g in key.grants],
        "fallbacks": list(key.fallbacks),
        "mcp_tools": list(key.mcp_tools),
        "mcp_tool_groups": list(key.mcp_tool_groups),
        "source": key.source,
    }


def _event_body(key: VirtualKey | None) -> dict[str, Any] | None:
    if key is None:
        return None
    view = public_view(key)
    view.pop("status")  # derived from the time; the fields it comes from are recorded
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in view.items()}


class KeyAdmin:
    def __init__(self, service: AdminService) -> None:
        self.service = service
        self.store = service.store

    async def get(self, key_id: str) -> VirtualKey:
        key = await self.store.key_by_id(key_id)
        if key is None:
            raise NotFound(f"no virtual key {key_id!r}")
        return key

    def _event(self, action: str, before: VirtualKey | None, after: VirtualKey, actor: str) -> ConfigEvent:
        return ConfigEvent(
            datetime.now(UTC), actor, KEY_KIND, after.id, action, _event_body(before), _event_body(after)
        )

    async def _write(self, action: str, before: VirtualKey, after: VirtualKey, actor: str) -> None:
        """The key and its event in one transaction, then the audit record and the cache reload."""
        event = self._event(action, before, after, actor)
        if not await self.store.update_key(after, event):
            raise NotFound(f"no virtual key {after.id!r}")
        await self.service.recorded([event])

    async def create(self, key: VirtualKey, actor: str, source: str = "api") -> tuple[VirtualKey, str]:
        """Stores a new key under a fresh secret; returns the key and the secret (shown once)."""
        if await self.store.key_by_id(key.id) is not None:
            raise Conflict(f"virtual key {key.id!r} exists already")
        secret = generate_secret()
        key = dataclasses.replace(key, key_hash=hash_secret(secret), key_hint=hint_of(secret), source=source)
        stored = dataclasses.replace(key, created_at=datetime.now(UTC))
        event = self._event("create", None, stored, actor)
        try:
            await self.store.create_key(key, event)
        except Exception:
            if await self.store.key_by_id(key.id) is not None:  # another request created it meanwhile
                raise Conflict(f"virtual key {key.id!r} exists already") from None
            raise
        await self.service.recorded([event])
        return await self.get(key.id), secret

    async def update(self, key_id: str, changes: dict[str, Any], actor: str) -> VirtualKey:
        before = await self.get(key_id)
        after = dataclasses.replace(before, **changes)
        if after == before:
            return before
        await self._write("update", before, after, actor)
        return after

    async def rotate(self, key_id: str, overlap: timedelta, actor: str) -> tuple[VirtualKey, str]:
        """A new secret; the old one keeps working for `overlap` (zero: stops at once)."""
        before = await self.get(key_id)
        if before.revoked_at is not None:
            raise Conflict(f"virtual key {key_id!r} is revoked; issue a new key instead")
        secret = generate_secret()
        now = datetime.now(UTC)
        after = dataclasses.replace(
            before,
            key_hash=hash_secret(secret),
            key_hint=hint_of(secret),
            previous_key_hash=before.key_hash if overlap > timedelta(0) else None,
            previous_valid_until=now + overlap if overlap > timedelta(0) else None,
        )
        await self._write("rotate", before, after, actor)
        return after, secret

    async def revoke(self, key_id: str, actor: str) -> VirtualKey:
        before = await self.get(key_id)
        if before.revoked_at is not None:
            raise Conflict(f"virtual key {key_id!r} was revoked already")
        # A revoked key's rotated-out secret must stop too.
        after = dataclasses.replace(
            before, revoked_at=datetime.now(UTC), previous_key_hash=None, previous_valid_until=None
        )
        await self._write("revoke", before, after, actor)
        return after

    async def expire(self, key_id: str, at: datetime | None, actor: str) -> VirtualKey:
        """Sets the expiry (now, when no time is given)."""
        at = at or datetime.now(UTC)
        return await self.update(key_id, {"expires_at": at}, actor)
