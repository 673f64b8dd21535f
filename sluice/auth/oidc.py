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
from urllib.parse import unquote, urlencode, urlsplit

from sluice.auth.directory import CLAIMED, IDP_GROUPS, SUBJECT, SUBJECT_ISSUER, USER, Directory, now_iso
from sluice.auth.idp import Idp, claim, groups_of
from sluice.auth.principal import Principal, Role
from sluice.auth.session import LOGIN_COOKIE, Signer, b64, cookie_value
from sluice.auth.tokens import TokenVerifier, looks_like_jwt, unverified_issuer
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.names import fold
from sluice.settings import OidcConfig
from sluice.storage.records import ConfigObject, VirtualKey

LOGIN_TTL_S = 600
DEFAULT_NEXT = "/auth/me"
IDENTITY_CONFLICT = "identity_conflict"  # the audit kind of a refused re-link (a security event)


def pkce_pair() -> tuple[str, str]:
    """RFC 7636 4.1-4.2: a 64-character verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    return verifier, b64(hashlib.sha256(verifier.encode("ascii")).digest())


def roles_for(config: OidcConfig, groups: Iterable[str]) -> frozenset[Role]:
    mapping = {fold(g): roles for g, roles in config.role_mapping.items()}
    found: set[Role] = set(config.default_roles)
    for group in groups:
        found.update(mapping.get(fold(group), ()))
    return frozenset(found)


def teams_for(config: OidcConfig, groups: Iterable[str]) -> frozenset[str]:
    """The teams a person leads, by `team_mapping` from their groups (case-insensitive names or ids)."""
    mapping = {fold(g): teams for g, teams in config.team_mapping.items()}
    found: set[str] = set()
    for group in groups:
        found.update(mapping.get(fold(group), ()))
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

    async def begin(self, next_path: str = DEFAULT_NEXT) -> tuple[str, str]:
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
            "login", {"state": state, "nonce": nonce, "verifier": verifier, "next": local_path(next_path)}, LOGIN_TTL_S
        )
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}{urlencode(params)}", cookie

    async def authorization_origin(self) -> str:
        """The origin of the provider's authorization endpoint: where a form of ours that starts a
        sign-in redirects to, so what its CSP `form-action` must allow (browsers apply it to the
        form's redirects too)."""
        parts = urlsplit(await self._idp.endpoint("authorization_endpoint"))
        return f"{parts.scheme}://{parts.netloc}"

    async def finish(self, query: Mapping[str, str], headers: Mapping[str, str]) -> SignIn:
        """Refusals raise; the HTTP edge counts them as authentication failures (a forged
        callback costs no audit record of its own)."""
        done = await self._finish(query, headers)
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
        if user.get(IDP_GROUPS) != token_groups:  # what the session's roles derive from on each use
            user = {**user, IDP_GROUPS: token_groups}
            await self._directory.put(USER, user_id, user, actor)
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
        return SignIn(principal, key, secret, local_path(str(pending.get("next") or DEFAULT_NEXT)))

    async def _user_for(self, claims: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The Sluice user the ID token names: the one bound to this issuer and `sub` at an earlier
        sign-in; before that, the SCIM user whose externalId is the subject (or Entra's `oid`),
        or whose userName is the username claim (by email only when the provider verified it);
        else, with JIT provisioning, a new user. A user bound to another subject is never rebound."""
        sub = str(claims["sub"])
        found = await self._link(await self._directory.objects(USER), claims)
        if found is None:
            if not self.config.jit_provisioning:
                raise SluiceError(ErrorKind.POLICY_KEY_INACTIVE, "You are not provisioned on this gateway.")
            username = _str(claim(claims, self.config.username_claim))
            email = _str(claim(claims, self.config.email_claim))
            body = {
                "userName": username or sub,
                "active": True,
                "displayName": _str(claim(claims, self.config.name_claim)),
            }
            if email:
                body["emails"] = [{"value": email, "primary": True, "type": "work"}]
            body = {k: v for k, v in body.items() if v is not None}
            found = ConfigObject(
                USER, secrets.token_hex(16), {**body, "meta": {"created": now_iso(), "lastModified": now_iso()}}
            )
        user_id, body = found.id, found.body
        if not body.get("active", True):
            raise SluiceError(ErrorKind.POLICY_KEY_INACTIVE, "Your account is deactivated on this gateway.")
        if body.get(SUBJECT) != sub or body.get(SUBJECT_ISSUER) != self.config.issuer:
            body = {**body, SUBJECT: sub, SUBJECT_ISSUER: self.config.issuer}
            await self._directory.put(USER, user_id, body, f"oidc:{body.get('userName') or sub}")
        return user_id, body

    async def _link(self, users: list[ConfigObject], claims: Mapping[str, Any]) -> ConfigObject | None:
        """The user these claims may sign in as (None: nobody yet); refuses, with a security
        event in the audit log, a sign-in that would rebind someone else's account."""
        match = link_of(users, claims, self.config)
        if match.conflict is None:
            return match.user
        await self._directory.record(IDENTITY_CONFLICT, "oidc", match.event(self.config.issuer, claims))
        raise SluiceError(ErrorKind.POLICY_KEY_INACTIVE, match.conflict)


@dataclass(frozen=True, slots=True)
class Link:
    """How a token's subject relates to the directory: its user, or why it may not have one."""

    user: ConfigObject | None = None
    conflict: str | None = None  # a refusal, for the person signing in
    reason: str | None = None  # the refusal, for the audit log
    candidate: ConfigObject | None = None  # the account the token came close to

    def event(self, issuer: str, claims: Mapping[str, Any]) -> dict[str, Any]:
        bound = self.candidate.body if self.candidate is not None else {}
        return {
            "reason": self.reason,
            "issuer": issuer,
            "subject": str(claims.get("sub")),
            "user": self.candidate.id if self.candidate is not None else None,
            "bound_issuer": bound.get(SUBJECT_ISSUER),
            "bound_subject": bound.get(SUBJECT),
        }


def _bound(body: Mapping[str, Any], issuer: str, sub: str) -> bool:
    # Records linked before the issuer was stored carry only `sub`: the configured issuer's.
    return body.get(SUBJECT) == sub and body.get(SUBJECT_ISSUER, issuer) == issuer


def email_verified(claims: Mapping[str, Any]) -> bool:
    # OIDC Core 5.1: a boolean; some providers (Cognito) send the string "true".
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def link_of(users: list[ConfigObject], claims: Mapping[str, Any], config: OidcConfig) -> Link:
    """The user bound to (issuer, sub); else the one unbound user the claims may be linked to:
    by externalId (the subject or Entra's `oid`, as SCIM provisioned it), then by userName (the
    username claim; when that is the email claim, only if the provider verified the address)."""
    sub = str(claims["sub"])
    for obj in users:
        if _bound(obj.body, config.issuer, sub):
            return Link(user=obj)
    username = _str(claim(claims, config.username_claim))
    ids = {sub, str(claims.get("oid") or sub)}
    by_id = next((o for o in users if o.body.get("externalId") in ids), None)
    by_name = None
    if username:
        by_name = next(
            (
                o
                for o in users
                if isinstance(o.body.get("userName"), str) and fold(o.body["userName"]) == fold(username)
            ),
            None,
        )
    candidate = by_id or by_name
    if candidate is None:
        return Link()
    if candidate.body.get(SUBJECT) is not None:
        return Link(
            conflict="This account is already linked to another identity at the identity provider; "
            "it is not re-linked. Ask your platform team if your account there changed.",
            reason="subject_changed",
            candidate=candidate,
        )
    by_email = by_id is None and config.username_claim == config.email_claim
    if by_email and config.require_verified_email and not email_verified(claims):
        return Link(
            conflict="Your identity provider has not verified your email address, so it cannot be "
            "linked to your account here. Verify it there and sign in again.",
            reason="email_not_verified",
            candidate=candidate,
        )
    return Link(user=candidate)


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
        link = link_of(await self._directory.objects(USER), claims, self.config)
        if link.reason == "subject_changed":
            await self._directory.record(IDENTITY_CONFLICT, "oidc", link.event(self.config.issuer, claims))
            raise SluiceError(ErrorKind.CALLER_INVALID_KEY, link.conflict or "")
        found = link.user  # an unverified email links nobody: the caller is an unknown person
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


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def local_path(path: str) -> str:
    """`path` when it is a path on this gateway, else the default: the post-sign-in redirect must
    never leave the site. Refused: absolute and scheme-relative URLs (`https://x`, `//x`), the
    backslash that browsers read as a slash (`/\\x`), control characters (browsers drop tabs and
    newlines, turning `/\t/x` into `//x`), and any of these hidden behind percent-encoding."""
    if not path or len(path) > 2048:
        return DEFAULT_NEXT
    decoded, seen = path, set()
    while decoded not in seen:  # %252F decodes to %2F, then to /
        seen.add(decoded)
        if not _plain_local(decoded):
            return DEFAULT_NEXT
        decoded = unquote(decoded)
    return path


def _plain_local(path: str) -> bool:
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        return False
    if "\\" in path or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in path):
        return False
    parts = urlsplit(path)
    return not parts.scheme and not parts.netloc
