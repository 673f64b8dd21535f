"""Google service-account credentials as a self-signed JWT (AIP-4111), for Vertex AI.

Google APIs accept a JWT signed with the service account's own private key as a bearer token,
without the OAuth token exchange: header `{alg: RS256, typ: JWT, kid: private_key_id}`, claims
`iss = sub = client_email`, `aud = https://aiplatform.googleapis.com/` (the service's root URL),
`iat`, and `exp` at most an hour later. So no HTTP call is needed to authenticate, nothing blocks
the event loop, and the one signature per hour is cheap. The token is cached until five minutes
before it expires.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

AUDIENCE = "https://aiplatform.googleapis.com/"
LIFETIME_S = 3600
REFRESH_BEFORE_S = 300


class CredentialsError(ValueError):
    """The service-account JSON cannot be used; the message says why (never the key)."""


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    client_email: str
    private_key_id: str
    private_key: rsa.RSAPrivateKey
    project_id: str | None

    @classmethod
    def load(cls, value: str) -> ServiceAccount:
        """`value` is the JSON itself, or the path of a file holding it."""
        text = value.strip()
        if not text.startswith("{"):
            try:
                text = Path(text).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise CredentialsError(f"cannot read the service-account file: {exc.strerror}") from None
        try:
            doc: dict[str, Any] = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise CredentialsError("the service-account credentials are not valid JSON") from None
        if doc.get("type") != "service_account":
            raise CredentialsError("the credentials are not a service-account key (type != service_account)")
        try:
            key = serialization.load_pem_private_key(str(doc["private_key"]).encode(), password=None)
            email, kid = str(doc["client_email"]), str(doc["private_key_id"])
        except (KeyError, ValueError):
            raise CredentialsError("the service-account key lacks a usable private_key, client_email or id") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialsError("the service-account private key is not an RSA key")
        return cls(email, kid, key, doc.get("project_id"))


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class SelfSignedJWT:
    def __init__(self, account: ServiceAccount, *, clock: Callable[[], float] = time.time) -> None:
        self.account = account
        self._clock = clock
        self._token = ""
        self._expires = 0.0

    def token(self) -> str:
        now = self._clock()
        if now < self._expires - REFRESH_BEFORE_S:
            return self._token
        issued = int(now)
        header = {"alg": "RS256", "typ": "JWT", "kid": self.account.private_key_id}
        claims = {
            "iss": self.account.client_email,
            "sub": self.account.client_email,
            "aud": AUDIENCE,
            "iat": issued,
            "exp": issued + LIFETIME_S,
        }
        signing_input = _b64(orjson.dumps(header)) + b"." + _b64(orjson.dumps(claims))
        signature = self.account.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        self._token = (signing_input + b"." + _b64(signature)).decode()
        self._expires = issued + LIFETIME_S
        return self._token
