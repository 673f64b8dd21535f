"""Two ways into the admin API that need no identity provider: the bootstrap admin token and
admin API tokens. Both are bearer secrets kept only as SHA-256 hashes (256-bit random secrets:
a fast hash suffices, compared in constant time).

The bootstrap token comes from SLUICE_ADMIN_TOKEN in the gateway's environment, or is set once
with `sluice admin bootstrap` (stored hashed). It is an admin, meant to create the first API
tokens (or to reach the API before single sign-on is set up), then to be put away.

Admin API tokens are stored as configuration objects of kind `admin_token`, so creating and
revoking one is recorded as a configuration event like any other admin change.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.auth.principal import ROLES, Principal, Role
from sluice.core.errors import ErrorKind, SluiceError
from sluice.storage.ports import ConfigStore
from sluice.storage.records import ConfigEvent, ConfigObject

BOOTSTRAP_ENV = "SLUICE_ADMIN_TOKEN"
TOKEN_KIND = "admin_token"
BOOTSTRAP_KIND = "admin_bootstrap"
TOKEN_PREFIX = "sk-sluice-admin-"
ADMIN_KINDS = frozenset({TOKEN_KIND, BOOTSTRAP_KIND})  # never exported, planned or shown as config


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True, slots=True)
class AdminToken:
    id: str
    name: str
    roles: tuple[Role, ...]
    teams: tuple[str, ...]
    user_id: str | None
    token_hash: str
    hint: str
    created_by: str
    expires_at: datetime | None = None

    def body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": list(self.roles),
            "teams": list(self.teams),
            "user_id": self.user_id,
            "token_hash": self.token_hash,
            "hint": self.hint,
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def of(cls, obj: ConfigObject) -> AdminToken:
        b = obj.body
        expires = b.get("expires_at")
        return cls(
            obj.id,
            b.get("name", obj.id),
            tuple(r for r in b.get("roles", ()) if r in ROLES),
            tuple(b.get("teams", ())),
            b.get("user_id"),
            b["token_hash"],
            b.get("hint", ""),
            b.get("created_by", ""),
            datetime.fromisoformat(expires) if expires else None,
        )

    def principal(self) -> Principal:
        return Principal(
            subject=f"token:{self.id}",
            roles=frozenset(self.roles),
            via="api-token",
            user_id=self.user_id,
            name=self.name,
            teams=frozenset(self.teams),
        )


async def create_token(
    store: ConfigStore,
    token_id: str,
    name: str,
    roles: list[Role],
    teams: list[str],
    user_id: str | None,
    actor: str,
    expires_at: datetime | None = None,
) -> tuple[AdminToken, str, ConfigEvent | None]:
    """Returns the token, its secret (shown once) and the change's event. Raises KeyError when
    the id is taken."""
    if any(o.kind == TOKEN_KIND and o.id == token_id for o in await store.list_objects()):
        raise KeyError(token_id)
    secret = generate_token()
    hint = secret[: len(TOKEN_PREFIX) + 4] + "…"
    token = AdminToken(
        token_id, name or token_id, tuple(roles), tuple(teams), user_id, hash_token(secret), hint, actor, expires_at
    )
    event = await store.put_object(ConfigObject(TOKEN_KIND, token_id, token.body(), actor), actor)
    return token, secret, event


async def list_tokens(store: ConfigStore) -> list[AdminToken]:
    return [AdminToken.of(o) for o in await store.list_objects() if o.kind == TOKEN_KIND]


async def set_bootstrap(store: ConfigStore, secret: str, actor: str, *, replace: bool) -> ConfigEvent | None:
    """Stores the bootstrap token's hash. Returns the change's event; None (and no change) when
    one is set already and `replace` is off."""
    if not replace and any(o.kind == BOOTSTRAP_KIND for o in await store.list_objects()):
        return None
    return await store.put_object(
        ConfigObject(BOOTSTRAP_KIND, "bootstrap", {"token_hash": hash_token(secret)}, actor), actor
    )


class BootstrapAuthenticator:
    def __init__(self, store: ConfigStore, env: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._env = os.environ if env is None else env

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        token = bearer(headers)
        if token is None or token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        expected = [hash_token(v) for v in (self._env.get(BOOTSTRAP_ENV),) if v]
        expected += [o.body["token_hash"] for o in await self._store.list_objects() if o.kind == BOOTSTRAP_KIND]
        if any(hmac.compare_digest(digest, e) for e in expected):
            return Principal(subject="bootstrap", roles=frozenset({"admin"}), via="bootstrap", name="bootstrap admin")
        return None  # not ours: another authenticator (an IdP's bearer token) may know it


class ApiTokenAuthenticator:
    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        token = bearer(headers)
        if token is None or not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        for found in await list_tokens(self._store):
            if hmac.compare_digest(found.token_hash, digest):
                if found.expires_at is not None and found.expires_at <= datetime.now(UTC):
                    raise SluiceError(ErrorKind.CALLER_INVALID_KEY, f"Admin token {found.id!r} has expired.")
                return found.principal()
        raise SluiceError(ErrorKind.CALLER_INVALID_KEY, "Invalid admin token.")
