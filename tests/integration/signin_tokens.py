"""A person signed in without the browser step: their directory entry, their profile's key and an
active grant written as the device flow's last step writes them, and an access token for it
(for tests of what a sign-in token does, not of how it is obtained: test_gateway_signin.py)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sluice.app import Services
from sluice.auth.directory import USER
from sluice.gateway_signin.service import REFRESH_PREFIX, digest, new_user_code
from sluice.storage.grants import GatewayGrant
from sluice.storage.records import VirtualKey


@dataclass(frozen=True)
class SignedIn:
    user_id: str
    grant_id: str
    key: VirtualKey
    access_token: str
    refresh_token: str


async def sign_in_directly(services: Services, groups: list[str], now: float | None = None) -> SignedIn:
    signin = services.identity.gateway
    assert signin is not None
    now = time.time() if now is None else now
    directory = services.identity.directory
    uid = f"u-{secrets.token_hex(4)}"
    body = {"userName": f"{uid}@example.com", "emails": [{"value": f"{uid}@example.com"}], "sluice:idpGroups": groups}
    await directory.put(USER, uid, body, "test")
    key, _ = await directory.sync_key(uid, "test", extra_groups=groups)
    assert key is not None, "the groups map to no access profile"
    gid = secrets.token_hex(8)
    refresh = f"{REFRESH_PREFIX}{gid}.{secrets.token_urlsafe(16)}"
    grant = GatewayGrant(
        id=gid,
        device_hash=digest(secrets.token_urlsafe(16)),
        user_code=new_user_code(),
        status="active",
        created_at=now,
        expires_at=now + signin.config.refresh_ttl_s,
        surface="claude_code",
        user_id=uid,
        key_id=key.id,
        refresh_hash=digest(refresh),
    )
    await services.store.create_grant(grant)
    tokens = signin.issue(grant, refresh, now)
    return SignedIn(uid, gid, key, tokens.access_token, refresh)
