"""Signed cookies: the short-lived sign-in state (state, nonce, PKCE verifier) and the session.

Both are stateless (HMAC-SHA256 over the JSON payload, with the purpose in the MAC so one can
never pass for the other), so any replica with the same `auth.session.secret` accepts them. The
session is still checked against the directory on every use, so it follows the directory within
one request: a deactivated person's cookie stops working at once, a sign-out voids every session
the person holds (`sluice:sessionsNotBefore` on their user record, shared by all replicas through
the store), and a sign-in session's roles and teams are derived again on each use from the groups
of that sign-in plus the person's directory groups as they are now (leaving an admin group over
SCIM ends admin rights with the next request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

import orjson

from sluice.auth.directory import IDP_GROUPS, SESSIONS_NOT_BEFORE, USER, Directory
from sluice.auth.principal import ROLES, Principal, Role
from sluice.settings import SessionConfig

LOGIN_COOKIE = "sluice_login"
# Groups -> (roles, teams lead), by the OIDC role and team mappings.
RoleMap = Callable[[Iterable[str]], tuple[frozenset[Role], frozenset[str]]]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, payload: str) -> str:
        return b64(hmac.new(self._secret, f"{purpose}.{payload}".encode(), hashlib.sha256).digest())

    def sign(self, purpose: str, data: dict[str, Any], ttl_s: float, *, now: float | None = None) -> str:
        payload = b64(orjson.dumps({**data, "exp": int((now or time.time()) + ttl_s)}))
        return f"{payload}.{self._mac(purpose, payload)}"

    def verify(self, purpose: str, token: str, *, now: float | None = None) -> dict[str, Any] | None:
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(purpose, payload)):
            return None
        try:
            data = orjson.loads(unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int) or data["exp"] < (now or time.time()):
            return None
        return data


def cookie_value(headers: Mapping[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def set_cookie(name: str, value: str, *, max_age: int, secure: bool, path: str = "/") -> str:
    """A Set-Cookie value: HttpOnly (no script reads it), SameSite=Lax (not sent on cross-site
    POSTs, still sent on the IdP's redirect back to us)."""
    flags = f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    return flags + ("; Secure" if secure else "")


class SessionAuthenticator:
    """The dashboard's session cookie, as an Authenticator for the admin API."""

    def __init__(
        self, config: SessionConfig, signer: Signer, directory: Directory, role_map: RoleMap | None = None
    ) -> None:
        self.config = config
        self._signer = signer
        self._directory = directory
        self._role_map = role_map

    def issue(self, principal: Principal, *, follow_groups: bool = False, now: float | None = None) -> str:
        """The Set-Cookie value of a new session. `follow_groups` (sign-in sessions): the roles and
        teams are derived from the person's groups on every use instead of read from the cookie."""
        data = {
            "sub": principal.subject,
            "uid": principal.user_id,
            "roles": sorted(principal.roles),
            "teams": sorted(principal.teams),
            "email": principal.email,
            "name": principal.name,
            "iat": now or time.time(),
            "live": follow_groups,
        }
        value = self._signer.sign("session", data, self.config.ttl_s, now=now)
        return set_cookie(self.config.cookie_name, value, max_age=self.config.ttl_s, secure=self.config.secure_cookie)

    def clear(self) -> str:
        return set_cookie(self.config.cookie_name, "", max_age=0, secure=self.config.secure_cookie)

    async def end(self, headers: Mapping[str, str], actor: str = "session") -> bool:
        """Sign-out: voids every session of the cookie's person, on every replica (a captured copy
        of the cookie included). False when the request carries no valid session of a person."""
        data = self._valid(headers)
        uid = data.get("uid") if data is not None else None
        if not isinstance(uid, str):
            return False
        user = await self._directory.get(USER, uid)
        if user is None:
            return False
        await self._directory.put(USER, uid, {**user, SESSIONS_NOT_BEFORE: time.time()}, actor)
        return True

    def _valid(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        value = cookie_value(headers, self.config.cookie_name)
        return self._signer.verify("session", value) if value else None

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        data = self._valid(headers)
        if data is None:
            return None  # none, expired or forged: as if there were no session (the caller signs in)
        roles: frozenset[Role] = frozenset(r for r in ROLES if r in data.get("roles", ()))
        teams = frozenset(str(t) for t in data.get("teams", ()) if isinstance(t, str))
        uid = data.get("uid")
        if uid is not None:
            user = await self._directory.get(USER, uid)
            if user is None or not user.get("active", True):
                return None
            issued = data.get("iat")
            void_before = user.get(SESSIONS_NOT_BEFORE)
            if not isinstance(issued, int | float) or (isinstance(void_before, int | float) and issued <= void_before):
                return None  # signed out since (here or on another replica)
            if data.get("live") and self._role_map is not None:
                groups = [*(str(g) for g in user.get(IDP_GROUPS, ())), *await self._directory.groups_of(uid)]
                roles, teams = self._role_map(groups)
        return Principal(
            subject=str(data["sub"]),
            roles=roles,
            via="session",
            user_id=uid,
            email=data.get("email"),
            name=data.get("name"),
            teams=teams,
        )
