"""A real OpenID provider (npm oidc-provider, tests/integration/oidc_provider) on 127.0.0.1, and a
scripted browser that signs in through its login and consent pages."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"


def rsa_jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class OidcProvider:
    def __init__(self, port: int, clients: list[dict[str, Any]], accounts: dict[str, Any], tmp: Path) -> None:
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").exists():
            pytest.fail("oidc-provider is not installed: run `make e2e-deps` (make test does it)")
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.jwks = {"keys": [rsa_jwk("test-key-1")]}
        self._config = tmp / "oidc-provider.json"
        self._config.write_text(json.dumps({"port": port, "clients": clients, "accounts": accounts, "jwks": self.jwks}))
        self._proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def __enter__(self) -> OidcProvider:
        self._proc = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "server.mjs"), str(self._config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._proc.stdout is not None
        ready = threading.Event()

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self.output.append(line)
                if line.startswith("ready "):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(20):
            self.__exit__()
            raise RuntimeError("oidc-provider did not start:\n" + "".join(self.output))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def browse(http: httpx2.Client, url: str, login: str, *, stop_at: str | None = None) -> httpx2.Response:
    """Follows redirects across the gateway and the provider, filling in the provider's login
    form (any password) and consent form, until a page that is neither; with `stop_at`, returns
    the redirect to that address without following it."""
    resp = http.get(url)
    for _ in range(30):
        if resp.status_code in (302, 303):
            target = urljoin(str(resp.url), resp.headers["location"])
            if stop_at and target.startswith(stop_at):
                return resp
            resp = http.get(target)
        elif resp.status_code == 200 and "/interaction/" in resp.url.path and "<form" in resp.text:
            if 'name="login"' in resp.text:
                form = {"prompt": "login", "login": login, "password": "any"}
            else:
                form = {"prompt": "consent"}
            resp = http.post(str(resp.url), data=form)
        else:
            return resp
    raise AssertionError("too many redirects")


def tokens_for(
    provider: OidcProvider, client_id: str, secret: str, redirect_uri: str, login: str, scope: str
) -> dict[str, Any]:
    """A code flow straight against the provider (no gateway): the tokens a client would hold."""
    verifier, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    with httpx2.Client(timeout=20) as http:
        resp = browse(http, f"{provider.issuer}/auth?{urlencode(query)}", login, stop_at=redirect_uri)
        code = parse_qs(urlparse(resp.headers["location"]).query)["code"][0]
        token = http.post(
            f"{provider.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(client_id, secret),
        )
        assert token.status_code == 200, token.text
        return dict(token.json())
