"""Secrets inside stored configuration objects (provider keys, MCP server credentials).

A stored secret is never the plain value. It is either
  env.NAME    - a reference, resolved from the gateway's environment when the object is used, or
  enc:TOKEN   - the value encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under SLUICE_SECRETS_KEY,
                which lives in the gateway's environment and never in the store.
A plain value sent to the admin API or written in a declarative file is sealed on the way in;
without SLUICE_SECRETS_KEY it is refused, so a plain secret never reaches the database.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

ENV_VAR = "SLUICE_SECRETS_KEY"
_ENV_REF = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")
_ENC = "enc:"


class SecretError(ValueError):
    """A secret that cannot be stored or read; the message says why (never the value)."""


def _fernet() -> Fernet | None:
    key = os.environ.get(ENV_VAR)
    if not key:
        return None
    # Any passphrase works: derive the 32-byte Fernet key from it.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def is_sealed(value: str) -> bool:
    return bool(_ENV_REF.match(value)) or value.startswith(_ENC)


SEALED = "(encrypted)"  # what is shown, exported and recorded instead of an encrypted secret


def seal(value: str) -> str:
    """The storable form of a secret: references and sealed values as they are, plain values
    encrypted."""
    if is_sealed(value):
        return value
    if value == SEALED:
        raise SecretError(f"{SEALED} stands for a secret the store holds; there is none here: give the value")
    fernet = _fernet()
    if fernet is None:
        raise SecretError(
            f"a plain secret cannot be stored without {ENV_VAR}; set it in the gateway's environment "
            "or give an env.NAME reference instead"
        )
    return _ENC + fernet.encrypt(value.encode()).decode()


def unseal(stored: str) -> str | None:
    """The plain value, or None when the reference is unset or the value cannot be decrypted."""
    ref = _ENV_REF.match(stored)
    if ref:
        return os.environ.get(ref.group(1)) or None
    if stored.startswith(_ENC):
        fernet = _fernet()
        if fernet is None:
            return None
        try:
            return fernet.decrypt(stored[len(_ENC) :].encode()).decode()
        except InvalidToken:
            return None
    return stored


def same_secret(stored: str, given: str) -> bool:
    """Whether `given` (as a file or a request states it) is what `stored` holds."""
    if stored == given:
        return True
    return not is_sealed(given) and stored.startswith(_ENC) and unseal(stored) == given


def describe(stored: str) -> str:
    """What the API shows instead of a secret: the reference (a name, not a secret) or a mark."""
    return stored if _ENV_REF.match(stored) else SEALED


def url_has_credentials(url: str) -> bool:
    """A URL carrying a user name, a password or a query (where tokens travel) is a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return True  # cannot tell: treat it as one
    return bool(parts.username or parts.password or "@" in parts.netloc or parts.query or parts.fragment)


def seal_url(url: str) -> str:
    """A URL as stored: sealed when it carries credentials, else as it is (shown and exported)."""
    return seal(url) if is_sealed(url) or url == SEALED or url_has_credentials(url) else url
