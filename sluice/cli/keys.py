"""Virtual key administration against the store."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.admin.keys import KeyAdmin
from sluice.admin.service import AdminService, Conflict, NotFound
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.cli.budgets import actor
from sluice.core.errors import SluiceError
from sluice.settings import AuditConfig
from sluice.storage.ports import Store
from sluice.storage.records import ProviderGrant, VirtualKey


def parse_grant(text: str) -> ProviderGrant:
    provider, _, models = text.partition("=")
    allowed = tuple(m.strip() for m in models.split(",") if m.strip())
    return ProviderGrant(provider.strip(), 1.0, allowed)


async def create(
    url: str,
    key_id: str,
    name: str,
    allow: list[str],
    team: str | None,
    customer: str | None,
    expires_at: datetime | None,
    audit: AuditConfig | None = None,
) -> str:
    """Issues the key (recorded as a configuration event, like the admin API's) and returns its
    secret, which is not stored."""
    store = open_store(url)
    try:
        await store.migrate()
        key = VirtualKey(
            id=key_id,
            name=name or key_id,
            key_hash="",
            key_hint="",
            grants=tuple(parse_grant(a) for a in allow),
            team_id=team,
            customer_id=customer,
            expires_at=expires_at,
        )
        try:
            _, secret = await _admin(store, audit).create(key, actor(), source="cli")
        except Conflict:
            raise SystemExit(f"error: a virtual key {key_id!r} exists already") from None
        return secret
    finally:
        await store.close()


def _admin(store: Store, audit: AuditConfig | None) -> KeyAdmin:
    return KeyAdmin(AdminService(store, AuditLog(audit or AuditConfig(), store)))


async def listing(url: str) -> list[str]:
    store = open_store(url)
    try:
        await store.migrate()
        keys = await store.list_keys()
    finally:
        await store.close()
    now = datetime.now(UTC)
    lines = [f"{'ID':24} {'NAME':28} {'SECRET':16} {'STATUS':9} {'TEAM':14} GRANTS"]
    for k in keys:
        status = "active"
        if k.revoked_at:
            status = "revoked"
        elif not k.is_active:
            status = "inactive"
        elif k.expires_at and k.expires_at <= now:
            status = "expired"
        grants = "; ".join(f"{g.provider}:{','.join(g.allowed_models) or '*'}" for g in k.grants) or "-"
        lines.append(f"{k.id:24} {k.name[:28]:28} {k.key_hint:16} {status:9} {(k.team_id or '-'):14} {grants}")
    return lines


async def revoke(url: str, key_id: str, audit: AuditConfig | None = None) -> bool:
    store = open_store(url)
    try:
        await store.migrate()
        await _admin(store, audit).revoke(key_id, actor())
        return True
    except (NotFound, Conflict):
        return False
    finally:
        await store.close()


__all__ = ["SluiceError", "create", "listing", "parse_grant", "revoke"]
