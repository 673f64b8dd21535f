"""One gateway with the gateway sign-in on, behind the real oidc-provider and in front of the fake
Anthropic API: the stack every sign-in test (device flow, /mcp authorization, the real Claude
Code) runs against, so each builds only what it adds (profiles, MCP servers, guard settings)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx2

from tests.fakes.upstream import FakeUpstreamThread
from tests.integration.oidc_support import OidcProvider
from tests.support import GatewayThread, free_port

SECRET = "sluice-client-secret-0123456789"
SCIM_TOKEN = "scim-token-0123456789-abcdef"
HAIKU = "claude-haiku-4-5-20251001"


@dataclass
class SigninStack:
    gw: GatewayThread
    idp: OidcProvider
    upstream: FakeUpstreamThread

    @property
    def base(self) -> str:
        return self.gw.base_url

    def scim(self) -> httpx2.Client:
        return httpx2.Client(base_url=f"{self.base}/scim/v2", headers={"authorization": f"Bearer {SCIM_TOKEN}"})


@contextmanager
def signin_stack(
    tmp: Path,
    accounts: dict[str, Any],
    profiles: list[dict[str, Any]],
    *,
    signin: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None,
    **config: Any,
) -> Iterator[SigninStack]:
    """`signin`: more of auth.gateway_signin; `auth`: more of auth (guard, default_profile);
    the rest: more top-level config (mcp, ...)."""
    gw_port, idp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{gw_port}"
    clients = [{"client_id": "sluice", "client_secret": SECRET, "redirect_uris": [f"{base}/auth/callback"]}]
    with FakeUpstreamThread() as upstream, OidcProvider(idp_port, clients, accounts, tmp) as idp:
        full: dict[str, Any] = {
            "audit": {"hmac_key": "signin-audit-key-0123456789"},
            "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-x"}]}},
            "access_profiles": profiles,
            "auth": {
                "oidc": {
                    "issuer": idp.issuer,
                    "client_id": "sluice",
                    "client_secret": SECRET,
                    "redirect_uri": f"{base}/auth/callback",
                    "scopes": ["openid", "email", "profile", "groups"],
                    "clock_skew_s": 0,
                },
                "session": {"secret": "session-secret-0123456789", "secure_cookie": False},
                "scim": {"token_sha256": [hashlib.sha256(SCIM_TOKEN.encode()).hexdigest()]},
                "gateway_signin": {"public_url": base, "interval_s": 5, **(signin or {})},
                **(auth or {}),
            },
            **config,
        }
        with GatewayThread(full, tmp, port=gw_port) as gw:
            yield SigninStack(gw, idp, upstream)


def through_provider(http: httpx2.Client, resp: httpx2.Response, login: str, *, stop_at: str = "") -> httpx2.Response:
    """A person's browser from `resp` on: follows redirects across the gateway and the provider,
    fills the provider's login (any password) and consent forms, continues past the once-shown
    key page; returns the first other page, or the redirect to an address starting `stop_at`."""
    for _ in range(30):
        if resp.status_code in (302, 303):
            target = urljoin(str(resp.url), resp.headers["location"])
            if stop_at and target.startswith(stop_at):
                return resp
            resp = http.get(target)
        elif resp.status_code == 200 and "/interaction/" in resp.url.path and "<form" in resp.text:
            form = {"prompt": "login", "login": login, "password": "x"} if 'name="login"' in resp.text else {}
            resp = http.post(str(resp.url), data=form or {"prompt": "consent"})
        elif resp.status_code == 200 and 'id="virtual-key"' in resp.text:  # first sign-in: the key, once
            found = re.search(r'<a href="([^"]+)">Continue', resp.text)
            assert found
            resp = http.get(urljoin(str(resp.url), found.group(1)))
        else:
            return resp
    raise AssertionError("too many steps")


def authorize_in_browser(
    base: str, authorize_url: str, login: str, redirect_uri: str, *, allow: bool = True
) -> httpx2.Response:
    """The MCP authorization's browser step: opens the client's /authorize link, signs in at the
    provider, allows (or denies) on the consent page; returns the redirect to the client."""
    with httpx2.Client(timeout=20) as http:
        page = through_provider(http, http.get(authorize_url), login, stop_at=redirect_uri)
        if page.status_code in (302, 303):  # refused before any sign-in: straight back to the client
            return page
        assert page.status_code == 200 and 'action="/authorize/consent"' in page.text, page.text
        action = "/authorize/consent" if allow else "/authorize/deny"
        return http.post(f"{base}{action}", headers={"origin": base})
