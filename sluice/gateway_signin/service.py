"""The gateway sign-in's state machine, without HTTP: device authorization (RFC 8628), the
browser's approval, the token endpoint's two grants, revocation (RFC 7009), and the request
path's question "which virtual key does this bearer stand for?".

A grant is one row from the device code to its end (sluice.storage.grants). Every transition is a
compare-and-set on the row's version, so a device code is redeemed once and a refresh token
rotates once even when two replicas race. Access tokens are signed and short-lived
(`access_ttl_s`); each use still reads the grant and the key, so an admin revocation, a
sign-out or a SCIM deactivation (which revokes the person's keys) ends access at the next
request, not at the token's expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sluice.auth.directory import IDP_GROUPS, USER, Directory
from sluice.auth.session import Signer
from sluice.core.errors import ErrorKind, SluiceError
from sluice.gateway_signin.token_cache import TokenCache
from sluice.governance.keys import check_usable
from sluice.governance.profiles import ProfileBook
from sluice.settings import AccessProfileConfig, GatewaySigninConfig
from sluice.storage.grants import GatewayGrant
from sluice.storage.ports import ConfigStore, GrantStore, KeyStore
from sluice.storage.records import ConfigEvent, VirtualKey

ACCESS_PREFIX = "sgw."  # tells a gateway token from a virtual key on the request path
REFRESH_PREFIX = "sgr."
_ACCESS = "gateway-access"  # the Signer purpose: a token signed for something else is not one
# RFC 8628 6.1: a base-20 alphabet of consonants (no vowels: no words; no look-alikes).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
_NOT_VALID = "Your gateway sign-in expired or is not valid. Run /login again."


class Store(GrantStore, KeyStore, ConfigStore, Protocol):
    pass


class OAuthError(Exception):
    """An OAuth error answer (RFC 6749 5.2, RFC 8628 3.5): `error` code and HTTP status."""

    def __init__(self, error: str, status: int = 400, description: str | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.description = error, status, description


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int


def idp_groups(user: Mapping[str, Any]) -> list[str]:
    """The groups of the person's last sign-in at the provider: with their directory groups, what
    their access profile derives from (as Directory.profile_of reads them)."""
    return [str(g) for g in user.get(IDP_GROUPS, ())]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_user_code() -> str:
    chars = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    return f"{chars[:4]}-{chars[4:]}"


def normalise_user_code(typed: str) -> str | None:
    """What a person typed (any case, spaces or dashes) as the stored form, or None when it cannot
    be a code (RFC 8628 6.1: be lenient about separators, strict about the alphabet)."""
    chars = "".join(c for c in typed.upper() if c.isalnum())
    if len(chars) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in chars):
        return None
    return f"{chars[:4]}-{chars[4:]}"


class GatewaySignin:
    def __init__(
        self,
        config: GatewaySigninConfig,
        store: Store,
        directory: Directory,
        signer: Signer,
        profiles: ProfileBook,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._store = store
        self._directory = directory
        self._signer = signer
        self._profiles = profiles
        self._clock = clock
        self.tokens = TokenCache(store, config.token_cache_ttl_s, clock)

    async def start(self) -> None:
        await self.tokens.start()

    async def stop(self) -> None:
        await self.tokens.stop()

    @property
    def base(self) -> str:
        return self.config.public_url.rstrip("/")

    # -- device authorization ------------------------------------------------------------------
    async def authorize(self, surface: str | None) -> DeviceAuthorization:
        now = self._clock()
        device_code = secrets.token_urlsafe(32)  # 256 bits (RFC 8628 5.2 wants it unguessable)
        for _ in range(5):  # a user code collision is rare (20^8 codes); draw again
            user_code = new_user_code()
            if await self._store.grant_by("user_code", user_code) is None:
                break
        grant = GatewayGrant(
            id=secrets.token_hex(16),
            device_hash=digest(device_code),
            user_code=user_code,
            status="pending",
            created_at=now,
            expires_at=now + self.config.device_ttl_s,
            surface=(surface or "")[:64] or None,
        )
        await self._store.create_grant(grant)
        return DeviceAuthorization(device_code, user_code, self.config.device_ttl_s, self.config.interval_s)

    async def pending(self, typed_code: str) -> GatewayGrant | None:
        """The grant a person's typed code names, if it is still waiting for them."""
        code = normalise_user_code(typed_code)
        grant = await self._store.grant_by("user_code", code) if code else None
        if grant is None or grant.status != "pending" or grant.expires_at <= self._clock():
            return None
        return grant

    async def approve(self, grant_id: str, user_id: str, actor: str) -> VirtualKey:
        """The signed-in person approves the device: the grant takes their self-service key (their
        access profile's), which is what every request on the token spends."""
        grant = await self._store.grant_by("id", grant_id)
        if grant is None or grant.status != "pending" or grant.expires_at <= self._clock():
            raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, "This sign-in code expired. Start again from your agent.")
        key = await self.person_key(user_id, actor)
        if not await self._store.swap_grant(grant, replace(grant, status="approved", user_id=user_id, key_id=key.id)):
            raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, "This sign-in code was used already.")
        await self._directory.record(
            "gateway_signin", actor, {"user": user_id, "virtual_key": key.id, "surface": grant.surface}
        )
        return key

    async def person_key(self, user_id: str, actor: str) -> VirtualKey:
        """The signed-in person's self-service key (their access profile's), which every request
        on the sign-in's tokens spends; refusals raise."""
        user = await self._directory.get(USER, user_id)
        if user is None or not user.get("active", True):
            raise SluiceError(ErrorKind.POLICY_KEY_INACTIVE, "Your account is deactivated on this gateway.")
        key, _ = await self._directory.sync_key(user_id, actor, extra_groups=idp_groups(user))
        if key is None:
            raise SluiceError(
                ErrorKind.POLICY_KEY_INACTIVE,
                "Your groups map to no access profile on this gateway, so there is nothing to sign in to.",
            )
        return key

    def now(self) -> float:
        return self._clock()

    async def record(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        await self._directory.record(kind, actor, data)

    async def deny(self, grant_id: str) -> None:
        grant = await self._store.grant_by("id", grant_id)
        if grant is not None and grant.status == "pending":
            await self._store.swap_grant(grant, replace(grant, status="denied"))

    # -- token endpoint ------------------------------------------------------------------------
    async def redeem(self, device_code: str) -> Tokens:
        """grant_type=urn:ietf:params:oauth:grant-type:device_code (RFC 8628 3.4-3.5)."""
        now = self._clock()
        grant = await self._store.grant_by("device_hash", digest(device_code)) if device_code else None
        if grant is None or grant.code_challenge is not None:  # an authorization code is no device code
            raise OAuthError("invalid_grant", description="Unknown device code.")
        if grant.status in ("active", "revoked"):
            raise OAuthError("invalid_grant", description="This device code was redeemed already.")
        if grant.status == "denied":
            raise OAuthError("access_denied")
        if grant.expires_at <= now:
            raise OAuthError("expired_token")
        too_soon = grant.last_poll is not None and now - grant.last_poll < self.config.interval_s
        if grant.status == "pending" or too_soon:
            # Every poll moves the mark, so a client that keeps polling too fast stays slowed.
            await self._store.swap_grant(grant, replace(grant, last_poll=now))
            raise OAuthError("slow_down" if too_soon else "authorization_pending")
        return await self.activate(grant, now, "This device code was redeemed already.")

    async def activate(self, grant: GatewayGrant, now: float, if_raced: str) -> Tokens:
        """The grant made active with a new refresh token, by compare-and-set: of two redemptions
        of one code (device or authorization code), one wins and the other is `invalid_grant`."""
        refresh = f"{REFRESH_PREFIX}{grant.id}.{secrets.token_urlsafe(32)}"
        active = replace(
            grant,
            status="active",
            last_poll=now,
            refresh_hash=digest(refresh),
            expires_at=now + self.config.refresh_ttl_s,
        )
        if not await self._store.swap_grant(grant, active):
            raise OAuthError("invalid_grant", description=if_raced)
        return self.issue(active, refresh, now)

    async def refresh(self, refresh_token: str) -> Tokens:
        """grant_type=refresh_token: a new pair, the old refresh token spent. A spent token used
        again means a copy exists somewhere: the whole grant is revoked (RFC 6819 5.2.2.3)."""
        now = self._clock()
        invalid = OAuthError("invalid_grant", 401, "Sign in again.")
        grant = await self._store.grant_by("refresh_hash", digest(refresh_token)) if refresh_token else None
        if grant is None:
            grant_id = refresh_token.removeprefix(REFRESH_PREFIX).partition(".")[0]
            reused = await self._store.grant_by("id", grant_id) if refresh_token.startswith(REFRESH_PREFIX) else None
            if reused is not None and reused.status == "active":
                await self._store.swap_grant(reused, replace(reused, status="revoked", revoked_at=now))
                await self._directory.record(
                    "gateway_token_reuse", "gateway-signin", {"user": reused.user_id, "grant": reused.id}
                )
            raise invalid
        if grant.status != "active" or grant.expires_at <= now or grant.user_id is None:
            raise invalid
        user = await self._directory.get(USER, grant.user_id)
        key, _ = (None, None)
        if user is not None and user.get("active", True):
            # Their groups may have moved them to another profile since: the key follows.
            actor = f"gateway-signin:{grant.user_id}"
            key, _ = await self._directory.sync_key(grant.user_id, actor, extra_groups=idp_groups(user))
        if key is None:
            await self._store.swap_grant(grant, replace(grant, status="revoked", revoked_at=now))
            raise invalid
        refresh = f"{REFRESH_PREFIX}{grant.id}.{secrets.token_urlsafe(32)}"
        rotated = replace(
            grant, refresh_hash=digest(refresh), key_id=key.id, expires_at=now + self.config.refresh_ttl_s
        )
        if not await self._store.swap_grant(grant, rotated):
            raise invalid
        return self.issue(rotated, refresh, now)

    def issue(self, grant: GatewayGrant, refresh: str, now: float) -> Tokens:
        # The audience is this gateway (its public URL) for a device sign-in, the resource server of
        # the model API and /mcp alike; the resource it was asked for (RFC 8707: `{base}/mcp`) for an
        # authorization code. A token another deployment signed with a shared secret is not one here.
        claims: dict[str, Any] = {
            "gid": grant.id,
            "uid": grant.user_id,
            "kid": grant.key_id,
            "aud": grant.resource or self.base,
            "iat": now,
        }
        access = ACCESS_PREFIX + self._signer.sign(_ACCESS, claims, self.config.access_ttl_s, now=now)
        return Tokens(access, refresh, self.config.access_ttl_s)

    async def revoke(self, token: str) -> None:
        """RFC 7009: an access or a refresh token ends its whole sign-in; an unknown token is no
        error (2.2: the answer is the same, so it tells a prober nothing)."""
        grant: GatewayGrant | None = None
        if token.startswith(ACCESS_PREFIX):
            claims = self._signer.verify(_ACCESS, token.removeprefix(ACCESS_PREFIX), now=self._clock())
            if claims is not None and isinstance(claims.get("gid"), str):
                grant = await self._store.grant_by("id", claims["gid"])
        elif token:
            grant = await self._store.grant_by("refresh_hash", digest(token))
        if grant is not None and grant.status != "revoked":
            await self._store.swap_grant(grant, replace(grant, status="revoked", revoked_at=self._clock()))

    async def sign_ins(self, user_id: str) -> list[GatewayGrant]:
        """The person's approved sign-ins, active or ended (a pending code is no one's yet)."""
        return [g for g in await self._store.grants_of(user_id) if g.status in ("approved", "active", "revoked")]

    async def revoke_one(self, user_id: str, grant_id: str, actor: str) -> GatewayGrant | None:
        """An admin ends one sign-in of the person: its tokens are refused at the next request.
        None when the person has no such sign-in; an ended one is answered as it is."""
        grant = await self._store.grant_by("id", grant_id)
        if grant is None or grant.user_id != user_id:
            return None
        if grant.status == "revoked":
            return grant
        ended = replace(grant, status="revoked", revoked_at=self._clock())
        if not await self._store.swap_grant(grant, ended):  # it changed meanwhile (a refresh): judge it again
            return await self.revoke_one(user_id, grant_id, actor)
        ended = replace(ended, version=grant.version + 1)
        await self._store.record_event(
            ConfigEvent(
                datetime.now(UTC),
                actor,
                "gateway_signin",
                grant.id,
                "update",
                {"status": grant.status},
                {"status": "revoked"},
            )
        )
        await self._directory.record("gateway_signin_revoked", actor, {"user": user_id, "grant": grant.id})
        return ended

    async def revoke_user(self, user_id: str) -> int:
        """Every sign-in of the person (admin revoke, SCIM deactivation)."""
        return await self._store.revoke_grants(user_id, self._clock())

    # -- the request path ----------------------------------------------------------------------
    @property
    def mcp_resource(self) -> str:
        """The /mcp endpoint's resource identifier (RFC 9728 `resource`, RFC 8707 `resource`)."""
        return self.base + "/mcp"

    async def key_for(self, token: str, *, mcp: bool = False) -> VirtualKey:
        """The virtual key a gateway bearer token spends; refusals raise as a bad key does. A
        token for the /mcp resource is taken on /mcp only (`mcp`), never on the model API."""
        now = self._clock()
        audiences = (self.base, self.mcp_resource) if mcp else (self.base,)
        cached = self.tokens.get(token, now)
        if cached is not None:
            if cached.audience not in audiences:  # an /mcp token cached by /mcp, now on the model API
                raise SluiceError(ErrorKind.CALLER_INVALID_KEY, _NOT_VALID)
            return self._usable(cached.key, now)
        generation = self.tokens.generation()
        claims = self._signer.verify(_ACCESS, token.removeprefix(ACCESS_PREFIX), now=now)
        if (
            claims is None
            or claims.get("aud") not in audiences
            or not isinstance(claims.get("gid"), str)
            or not isinstance(claims.get("kid"), str)
        ):
            raise SluiceError(ErrorKind.CALLER_INVALID_KEY, _NOT_VALID)
        grant = await self._store.grant_by("id", claims["gid"])
        if grant is None or grant.status != "active" or not hmac.compare_digest(grant.key_id or "", claims["kid"]):
            raise SluiceError(ErrorKind.CALLER_INVALID_KEY, "Your gateway sign-in was revoked. Run /login again.")
        key = await self._store.key_by_id(claims["kid"])
        if key is None:
            raise SluiceError(ErrorKind.CALLER_INVALID_KEY, "Your gateway sign-in was revoked. Run /login again.")
        usable = self._usable(key, now)  # a key that is not usable is not kept: it is asked again
        exp = claims.get("exp")
        token_exp = float(exp) if isinstance(exp, int | float) else now
        self.tokens.put(token, key, claims["aud"], token_exp, now, generation)
        return usable

    def _usable(self, stored: VirtualKey, now: float) -> VirtualKey:
        key = self._profiles.derive(stored)
        check_usable(key, datetime.fromtimestamp(now, UTC))
        return key

    def profile(self, profile_id: str | None) -> AccessProfileConfig | None:
        return self._profiles.profiles.get(profile_id) if profile_id else None

    def resource_metadata(self, path: str = "") -> dict[str, Any]:
        """RFC 9728 protected-resource metadata for `{base}{path}` (the MCP authorization
        specification's discovery: a client that got a 401 from /mcp finds its authorization
        server here). `path` is "" for the gateway as a whole, "/mcp" for the MCP endpoint."""
        return {
            "resource": self.base + path,
            "authorization_servers": [self.base],
            "bearer_methods_supported": ["header"],
            "resource_name": "Sluice",
        }

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 metadata with the fields Claude Code reads (docs/design/claude-gateway-protocol.md)."""
        base = self.base
        return {
            "issuer": base,
            "device_authorization_endpoint": f"{base}/oauth/device_authorization",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            # The authorization code with PKCE and registration is for MCP clients (/mcp); Claude
            # Code's gateway sign-in reads only the device and token endpoints and ignores the rest.
            "authorization_endpoint": f"{base}/authorize",
            "registration_endpoint": f"{base}/oauth/register",
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": [
                "urn:ietf:params:oauth:grant-type:device_code",
                "authorization_code",
                "refresh_token",
            ],
            "response_types_supported": ["code"],
            "authorization_response_iss_parameter_supported": True,
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "profile", "email"],  # the reference serves it; nothing reads it
            "gateway_protocol_version": 1,
        }
