"""Who is signed in to the console, and the CSRF token of their forms.

Two ways in, both ending in the admin API's own authenticator chain (so the console knows exactly
the principals, roles and teams the API knows):
- single sign-on: the existing OIDC flow (/auth/login) leaves the session cookie, which the chain's
  SessionAuthenticator reads;
- an admin token (bootstrap or admin API token) typed into the sign-in form: it is kept in an
  encrypted, HttpOnly, SameSite=Strict cookie scoped to /console and presented to the chain on every
  request, so revoking the token ends the console session at once.

CSRF: a synchronizer token derived from the credential cookie (HMAC), put in every form and
checked on every POST, plus a refusal of any request a browser marks as cross-site or whose Origin
is not ours. The sign-in form gets the same, bound to a short-lived pre-session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from sluice.auth.session import cookie_value

TOKEN_COOKIE = "sluice_console"
PRE_COOKIE = "sluice_console_pre"
PATH = "/console"


class ConsoleSession:
    def __init__(self, secret: bytes, *, session_cookie: str, secure: bool, ttl_s: int) -> None:
        self._mac_key = hmac.new(secret, b"sluice-console-csrf", hashlib.sha256).digest()
        fernet_key = hmac.new(secret, b"sluice-console-token", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(fernet_key))
        self.session_cookie = session_cookie
        self.secure = secure
        self.ttl_s = ttl_s

    # -- the admin-token cookie -----------------------------------------------------------------
    def token_cookie(self, token: str) -> str:
        value = self._fernet.encrypt(token.encode()).decode()
        return self._cookie(TOKEN_COOKIE, value, self.ttl_s)

    def clear_token_cookie(self) -> str:
        return self._cookie(TOKEN_COOKIE, "", 0)

    def token_of(self, headers: Mapping[str, str]) -> str | None:
        value = cookie_value(headers, TOKEN_COOKIE)
        if not value:
            return None
        try:
            return self._fernet.decrypt(value.encode(), ttl=self.ttl_s).decode()
        except (InvalidToken, ValueError):
            return None

    def credential_headers(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """The headers to hand the admin authenticator chain: the admin token as a Bearer
        credential, else the single sign-on session cookie; None when there is neither."""
        token = self.token_of(headers)
        if token is not None:
            return {"authorization": f"Bearer {token}"}
        session = cookie_value(headers, self.session_cookie)
        if session:
            return {"cookie": f"{self.session_cookie}={session}"}
        return None

    # -- CSRF -------------------------------------------------------------------------------------
    def _binding(self, headers: Mapping[str, str]) -> str | None:
        return cookie_value(headers, TOKEN_COOKIE) or cookie_value(headers, self.session_cookie)

    def csrf_token(self, headers: Mapping[str, str]) -> str:
        binding = self._binding(headers) or ""
        return hmac.new(self._mac_key, b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()

    def pre_cookie(self) -> tuple[str, str]:
        """(Set-Cookie value, form token) for the sign-in form."""
        value = secrets.token_urlsafe(24)
        token = hmac.new(self._mac_key, b"pre:" + value.encode(), hashlib.sha256).hexdigest()
        return self._cookie(PRE_COOKIE, value, 600), token

    def pre_token_ok(self, headers: Mapping[str, str], sent: str) -> bool:
        value = cookie_value(headers, PRE_COOKIE)
        if not value or not sent:
            return False
        want = hmac.new(self._mac_key, b"pre:" + value.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, sent)

    def csrf_ok(self, headers: Mapping[str, str], sent: str) -> bool:
        if not sent or self._binding(headers) is None:
            return False
        return hmac.compare_digest(self.csrf_token(headers), sent)

    def _cookie(self, name: str, value: str, max_age: int) -> str:
        flags = f"{name}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
        return flags + ("; Secure" if self.secure else "")


def same_origin(headers: Mapping[str, str], scheme: str) -> bool:
    """False when the browser says the request comes from another site: Sec-Fetch-Site, else an
    Origin that is not this host. Requests without either (old browsers, curl) are left to the
    CSRF token."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    return bool(host) and origin in (f"{scheme}://{host}", f"http://{host}", f"https://{host}")


def form_value(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
