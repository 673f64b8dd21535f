"""Validating the provider's JWTs: ID tokens at sign-in (OIDC Core 3.1.3.7) and ID or access
tokens presented as Bearer tokens on the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jwt

from sluice.auth.idp import Idp
from sluice.core.errors import ErrorKind, SluiceError

_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired."),
    (jwt.ImmatureSignatureError, "The token is not valid yet (iat/nbf in the future)."),
    (jwt.InvalidAudienceError, "The token was not issued for this gateway (audience)."),
    (jwt.InvalidIssuerError, "The token comes from another issuer."),
    (jwt.InvalidSignatureError, "The token's signature does not verify."),
    (jwt.MissingRequiredClaimError, "The token lacks a required claim."),
)


def _invalid(message: str) -> SluiceError:
    return SluiceError(ErrorKind.CALLER_INVALID_KEY, message)


def looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2]) and parts[0].startswith("eyJ")


def unverified_issuer(token: str) -> str | None:
    """Who claims to have issued the token, to decide whether it is ours to check at all."""
    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None
    return iss if isinstance(iss, str) else None


class TokenVerifier:
    def __init__(self, idp: Idp) -> None:
        self._idp = idp
        self._config = idp.config

    async def verify(self, token: str, *, audiences: Sequence[str], nonce: str | None = None) -> dict[str, Any]:
        """The token's claims once signature, issuer, audience, expiry and issue time check out
        (and the nonce, for an ID token from our own sign-in). Raises CALLER_INVALID_KEY."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("The token is not a well-formed JWT.") from None
        alg = header.get("alg")
        # Only asymmetric algorithms we were told to accept: never "none", and no HS256 (the
        # client secret would then be a signing key for anyone who knows it).
        if alg not in self._config.allowed_algorithms:
            raise _invalid(f"The token's algorithm {alg!r} is not accepted.")
        key = await self._idp.signing_key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=self._config.issuer,
                leeway=self._config.clock_skew_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            for kind, message in _REASONS:
                if isinstance(exc, kind):
                    raise _invalid(message) from None
            raise _invalid("The token is not valid.") from None
        # OIDC Core 3.1.3.7 (4, 5): with several audiences the authorized party must be us.
        aud = claims.get("aud")
        azp = claims.get("azp")
        if isinstance(aud, list) and len(aud) > 1 and azp is not None and azp not in audiences:
            raise _invalid("The token was issued to another client (azp).")
        if nonce is not None and claims.get("nonce") != nonce:
            raise _invalid("The ID token's nonce does not match this sign-in.")
        return claims
