"""OpenID Connect sign-in: authorization code flow with PKCE (S256), state and nonce, and the
Bearer authenticator that accepts the provider's ID and access tokens on the API.

The flow (OIDC Core 3.1): `begin` sends the browser to the provider's authorization endpoint with
a fresh state, nonce and PKCE challenge, all three kept in a signed, HttpOnly cookie; `finish`
checks the state against that cookie, redeems the code with the verifier, validates the ID token
(signature, iss, aud, exp, iat, nonce), links or creates the user, maps their groups to roles and
to an access profile, and allocates their virtual key on the first sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sluice.auth.directory import CLAIMED, SUBJECT, USER, Directory, now_iso
from sluice.auth.idp import Idp, claim, groups_of
from sluice.auth.principal import Principal, Role
from sluice.auth.session import LOGIN_COOKIE, Signer, b64, cookie_value
from sluice.auth.tokens import TokenVerifier, looks_like_jwt, unverified_issuer
from sluice.core.errors import ErrorKind, SluiceError
from sluice.settings import OidcConfig
from sluice.storage.records import ConfigObject, VirtualKey

LOGIN_TTL_S = 600


def pkce_pair() -> tuple[str, str]:
    """RFC 7636 4.1-4.2: a 64-character verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    return verifier, b64(hashlib.sha256(verifier.encode("ascii")).digest())


def roles_for(config: OidcConfig, groups: Iterable[str]) -> frozenset[Role]:
    mapping = {g.casefold(): roles for g, roles in config.role_mapping.items()}
    found: set[Role] = set(config.default_roles)
    for group in groups:
        found.update(mapping.get(group.casefold(), ()))
    return frozenset(found)


def teams_for(config: OidcConfig, groups: Iterable[str]) -> frozenset[str]:
    """The teams a person leads, by `team_mapping` from their groups (case-insensitive names or ids)."""
    mapping = {g.casefold(): teams for g, teams in config.team_mapping.items()}
    found: set[str] = set()
    for group in groups:
        found.update(mapping.get(group.casefold(), ()))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class SignIn:
    principal: Principal
    key: VirtualKey | None
    secret: str | None  # the key's secret, when this sign-in is the one that shows it
    next_path: str


class OidcLogin:
    def __init__(self, config: OidcConfig, idp: Idp, verifier: TokenVerifier, directory: Directory, signer: Signer):
        self.config = config
        self._idp = idp
        self._verifier = verifier
        self._directory = directory
        self._signer = signer

    async def begin(self, next_path: str = "/auth/me") -> tuple[str, str]:
        """(the provider URL to redirect to, the value of the sign-in cookie)."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        url = await self._idp.endpoint("authorization_endpoint")
        cookie = self._signer.sign(
            "login", {"state": state, "nonce": nonce, "verifier": verifier, "next": _local(next_path)}, LOGIN_TTL_S
        )
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}{urlencode(params)}", cookie

    async def finish(self, query: Mapping[str, str], headers: Mapping[str, str]) -> SignIn:
        try:
            done = await self._finish(query, headers)
        except SluiceError as exc:
            await self._directory.record("auth_failure", "oidc", {"surface": "sign-in", "reason": exc.message})
            raise
        principal = done.principal
        data = {"user": principal.user_id, "roles": sorted(principal.roles), "key_shown": done.secret is not None}
        await self._directory.record("sign_in", principal.actor, data)
        return done

    async def _finish(self, query: Mapping[str, str], headers: Mapping[str, str]) -> SignIn:
        if "error" in query:
            raise SluiceError(
                ErrorKind.CALLER_INVALID_KEY,
                f"The identity provider refused the sign-in: {query.get('error_description') or query['error']}.",
            )
        raw = cookie_value(headers, LOGIN_COOKIE)
        pending = self._signer.verify("login", raw) if raw else None
        state = query.get("state", "")
        # The state binds the answer to the browser that started the sign-in (CSRF on the
        # callback); a missing or expired cookie is a sign-in to start again.
        if pending is None or not hmac.compare_digest(str(pending["state"]), state):
            raise SluiceError(
                ErrorKind.CALLER_INVALID_KEY, "This sign-in expired or was not started here. Sign in again."
            )
        code = query.get("code")
        if not code:
            raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, "The identity provider sent no authorization code.")
        tokens = await self._idp.exchange_code(code, str(pending["verifier"]))
        claims = await self._verifier.verify(
            str(tokens["id_token"]), audiences=[self.config.client_id], nonce=str(pending["nonce"])
        )
        token_groups = groups_of(claims, self.config.groups_claim)
        user_id, user = await self._user_for(claims)
        actor = f"oidc:{user.get('userName') or user_id}"
        key, secret = await self._directory.sync_key(user_id, actor, extra_groups=token_groups)
        if key is not None and not user.get(CLAIMED):
            # A key SCIM allocated has a secret nobody has seen: the first sign-in reveals a
            # fresh one, once.
            if secret is None:
                secret = await self._directory.new_secret(key, actor)
            await self._directory.put(USER, user_id, {**user, CLAIMED: True}, actor)
        groups = [*token_groups, *await self._directory.groups_of(user_id)]
        principal = Principal(
            subject=user_id,
            roles=roles_for(self.config, groups),
            via="oidc",
            user_id=user_id,
            email=_str(claim(claims, self.config.email_claim)),
            name=_str(claim(claims, self.config.name_claim)),
            teams=teams_for(self.config, groups),
        )
        return SignIn(principal, key, secret, str(pending.get("next") or "/auth/me"))

    async def _user_for(self, claims: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The Sluice user the ID token names: linked by `sub` after the first sign-in; before
        that, the SCIM user whose userName is the username claim (or whose externalId is the
        subject or Entra's `oid`); else, with JIT provisioning, a new user."""
        sub = str(claims["sub"])
        username = _str(claim(claims, self.config.username_claim))
        candidates = {sub, str(claims.get("oid") or sub)}
        match: tuple[str, dict[str, Any]] | None = None
        for obj in await self._directory.objects(USER):
            body = obj.body
            if body.get(SUBJECT) == sub:
                match = (obj.id, body)
                break
            name = body.get("userName")
            by_name = username and isinstance(name, str) and name.casefold() == username.casefold()
            if match is None and (by_name or body.get("externalId") in candidates):
                match = (obj.id, body)
        if match is None:
            if not self.config.jit_provisioning:
                raise SluiceError(ErrorKind.POLICY_KEY_INACTIVE, "You are not provisioned on this gateway.")
            email = _str(claim(claims, self.config.email_claim))
            body = {
                "userName": username or sub,
                "active": True,
                "displayName": _str(claim(claims, self.config.name_claim)),
            }
            if email:
                body["emails"] = [{"value": email, "primary": True, "type": "work"}]
            body = {k: v for k, v in body.items() if v is not None}
            match = (secrets.token_hex(16), {**body, "meta": {"created": now_iso(), "lastModified": now_iso()}})
        user_id, body = match
        if not body.get("active", True):
            raise SluiceError(ErrorKind.POLICY_KEY_INACTIVE, "Your account is deactivated on this gateway.")
        if body.get(SUBJECT) != sub:
            body = {**body, SUBJECT: sub}
            await self._directory.put(USER, user_id, body, f"oidc:{body.get('userName') or sub}")
        return user_id, body


class OidcBearerAuthenticator:
    """`Authorization: Bearer <JWT>` from our identity provider: an ID token (aud = client_id)
    or an access token for one of `auth.oidc.audiences`. Tokens from other issuers, and opaque
    tokens, are left to the other authenticators."""

    def __init__(self, config: OidcConfig, verifier: TokenVerifier, directory: Directory) -> None:
        self.config = config
        self._verifier = verifier
        self._directory = directory

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not looks_like_jwt(token) or unverified_issuer(token) != self.config.issuer:
            return None
        claims = await self._verifier.verify(token, audiences=[self.config.client_id, *self.config.audiences])
        groups = groups_of(claims, self.config.groups_claim)
        user_id: str | None = None
        found = _linked_user(await self._directory.objects(USER), claims, self.config)
        if found is not None:
            if not found.body.get("active", True):
                raise SluiceError(ErrorKind.POLICY_KEY_INACTIVE, "Your account is deactivated on this gateway.")
            user_id = found.id
            groups += await self._directory.groups_of(found.id)
        return Principal(
            subject=user_id or f"oidc:{claims['sub']}",
            roles=roles_for(self.config, groups),
            via="oidc",
            user_id=user_id,
            email=_str(claim(claims, self.config.email_claim)),
            name=_str(claim(claims, self.config.name_claim)),
            teams=teams_for(self.config, groups),
        )


def _linked_user(users: list[ConfigObject], claims: Mapping[str, Any], config: OidcConfig) -> ConfigObject | None:
    """The user a Bearer token names: linked by `sub` at a sign-in; before any sign-in, the SCIM
    user whose userName is the username claim or whose externalId is the subject (or Entra's
    `oid`), as a sign-in would link them. Nothing is written here."""
    sub = str(claims["sub"])
    username = _str(claim(claims, config.username_claim))
    candidates = {sub, str(claims.get("oid") or sub)}
    fallback: ConfigObject | None = None
    for obj in users:
        if obj.body.get(SUBJECT) == sub:
            return obj
        name = obj.body.get("userName")
        by_name = username and isinstance(name, str) and name.casefold() == username.casefold()
        linked_elsewhere = obj.body.get(SUBJECT) is not None
        if fallback is None and not linked_elsewhere and (by_name or obj.body.get("externalId") in candidates):
            fallback = obj
    return fallback


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _local(path: str) -> str:
    """Only paths on this gateway after sign-in (no open redirect to another site)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/auth/me"
