"""Virtual key administration against the store."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.app import open_store
from sluice.core.errors import SluiceError
from sluice.governance.keys import generate_secret, hash_secret, hint_of
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
) -> str:
    store = open_store(url)
    try:
        await store.migrate()
        if await store.key_by_id(key_id) is not None:
            raise SystemExit(f"error: a virtual key {key_id!r} exists already")
        secret = generate_secret()
        await store.create_key(
            VirtualKey(
                id=key_id,
                name=name or key_id,
                key_hash=hash_secret(secret),
                key_hint=hint_of(secret),
                grants=tuple(parse_grant(a) for a in allow),
                team_id=team,
                customer_id=customer,
                expires_at=expires_at,
                source="cli",
            )
        )
        return secret
    finally:
        await store.close()


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


async def revoke(url: str, key_id: str) -> bool:
    store = open_store(url)
    try:
        await store.migrate()
        return await store.revoke_key(key_id, datetime.now(UTC))
    finally:
        await store.close()


__all__ = ["SluiceError", "create", "listing", "parse_grant", "revoke"]
