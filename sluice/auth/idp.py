"""The OpenID provider as seen from Sluice: its discovery document, its signing keys (JWKS), its
token endpoint. Every call goes through sluice's one upstream client.

JWT handling is PyJWT (with `cryptography`, already a dependency): small, typed, widely used, and
it leaves fetching keys to us, so the JWKS comes through the upstream client instead of PyJWT's
blocking urllib fetcher.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import orjson

from sluice.core.errors import ErrorKind, SluiceError
from sluice.settings import OidcConfig
from sluice.upstream.client import Timeouts, UpstreamClient

IDP_TIMEOUTS = Timeouts(connect=5.0, first_byte=10.0, read=10.0, total=15.0)
PROVIDER = "identity provider"


class Idp:
    def __init__(self, config: OidcConfig, client: UpstreamClient, *, monotonic: Any = time.monotonic) -> None:
        self.config = config
        self._client = client
        self._monotonic = monotonic
        self._discovery: dict[str, Any] | None = None
        self._discovered_at = 0.0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._unnamed: list[jwt.PyJWK] = []  # keys without a kid (a provider with one key)
        self._keys_at = -1e9
        self._lock = asyncio.Lock()

    async def _get_json(self, url: str) -> dict[str, Any]:
        resp = await self._client.request("GET", PROVIDER, url, {"accept": "application/json"}, None, IDP_TIMEOUTS)
        body = await resp.read()
        if resp.status != 200:
            raise SluiceError(ErrorKind.PROVIDER_ERROR, f"{url} answered {resp.status}", upstream_status=resp.status)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise SluiceError(ErrorKind.PROVIDER_ERROR, f"{url} did not answer a JSON object")
        return doc

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None or self._monotonic() - self._discovered_at > self.config.jwks_ttl_s:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = await self._get_json(url)
            # OpenID Connect Discovery 1.0, 4.3: the issuer in the document must be exactly ours,
            # or tokens it describes could be passed off as another tenant's.
            if doc.get("issuer") != self.config.issuer:
                raise SluiceError(
                    ErrorKind.GATEWAY_NOT_CONFIGURED,
                    f"the discovery document names issuer {doc.get('issuer')!r}, not {self.config.issuer!r}",
                )
            self._discovery, self._discovered_at = doc, self._monotonic()
        return self._discovery

    async def endpoint(self, name: str) -> str:
        value = (await self.discovery()).get(name)
        if not isinstance(value, str):
            raise SluiceError(ErrorKind.GATEWAY_NOT_CONFIGURED, f"the identity provider publishes no {name}")
        return value

    async def signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The key a token names. An unknown kid refetches the JWKS (the provider rotated its
        keys), but not more often than `jwks_refetch_min_s`, so garbage kids cannot make us
        hammer the provider."""
        stale = self._monotonic() - self._keys_at > self.config.jwks_ttl_s
        if stale or not self._find(kid):
            async with self._lock:
                age = self._monotonic() - self._keys_at
                if stale or (not self._find(kid) and age >= self.config.jwks_refetch_min_s):
                    await self._fetch_keys()
        key = self._find(kid)
        if key is None:
            raise SluiceError(
                ErrorKind.CALLER_INVALID_KEY, "The token is signed with a key the provider does not publish."
            )
        return key

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        return self._unnamed[0] if len(self._unnamed) == 1 else None

    async def _fetch_keys(self) -> None:
        doc = await self._get_json(await self.endpoint("jwks_uri"))
        keys: dict[str, jwt.PyJWK] = {}
        unnamed: list[jwt.PyJWK] = []
        for item in doc.get("keys", []):
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(item)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type we cannot use; others may do
            if item.get("kid"):
                keys[str(item["kid"])] = key
            else:
                unnamed.append(key)
        self._keys, self._unnamed, self._keys_at = keys, unnamed, self._monotonic()

    async def exchange_code(self, code: str, verifier: str) -> dict[str, Any]:
        """The authorization code for tokens (OIDC Core 3.1.3.1), proving possession of the PKCE
        verifier (RFC 7636 4.5)."""
        form: dict[str, str] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_uri,
            "code_verifier": verifier,
            "client_id": self.config.client_id,
        }
        headers: dict[str, str] = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        secret = self.config.client_secret
        if secret is not None and self.config.token_auth_method == "client_secret_post":
            form["client_secret"] = secret.get_secret_value()
        elif secret is not None:
            del form["client_id"]
            pair = f"{quote(self.config.client_id, safe='')}:{quote(secret.get_secret_value(), safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        url = await self.endpoint("token_endpoint")
        resp = await self._client.request("POST", PROVIDER, url, headers, urlencode(form).encode(), IDP_TIMEOUTS)
        body = await resp.read()
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = {}
        if resp.status != 200 or not isinstance(doc, dict) or "id_token" not in doc:
            error = doc.get("error", resp.status) if isinstance(doc, dict) else resp.status
            raise SluiceError(ErrorKind.CALLER_INVALID_KEY, f"The identity provider refused the code ({error}).")
        return doc


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by dotted path (`realm_access.roles`); a claim whose own name has dots wins."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def groups_of(claims: Mapping[str, Any], path: str) -> list[str]:
    value = claim(claims, path)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []
