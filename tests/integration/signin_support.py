"""A person's browser in the gateway sign-in's device flow (sluice.gateway_signin), against Sluice and
the real oidc-provider (tests/integration/oidc_support)."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx2


def approve_in_browser(base_url: str, verification_uri_complete: str, login: str) -> httpx2.Response:
    """A person's browser: opens the link, confirms the code, signs in at the provider (login and
    consent forms), continues past the once-shown key page, lands on the approval."""
    with httpx2.Client(timeout=20) as http:
        page = http.get(verification_uri_complete)
        code = re.search(r'name="user_code" value="([^"]*)"', page.text)
        assert code, page.text
        resp = http.post(f"{base_url}/device", data={"user_code": code.group(1)}, headers={"origin": base_url})
        for _ in range(30):
            if resp.status_code in (302, 303):
                resp = http.get(urljoin(str(resp.url), resp.headers["location"]))
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
