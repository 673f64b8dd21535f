"""ID/access token validation against a JWKS, including key rotation, without a network: the
provider's documents are served by a stub in place of the upstream client."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sluice.auth.idp import Idp, claim, groups_of
from sluice.auth.tokens import TokenVerifier
from sluice.core.errors import SluiceError
from sluice.settings import OidcConfig
from sluice.upstream.client import UpstreamClient

ISSUER = "https://idp.example.com/oauth2/default"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StubIdp(Idp):
    def __init__(self, config: OidcConfig, clock: Clock) -> None:
        super().__init__(config, UpstreamClient(), monotonic=clock)
        self.published: list[Any] = []
        self.fetches = 0
        self.discovered_issuer = ISSUER

    async def _get_json(self, url: str) -> dict[str, Any]:
        if url.endswith("/.well-known/openid-configuration"):
            return {"issuer": self.discovered_issuer, "jwks_uri": "https://idp.example.com/keys"}
        self.fetches += 1
        return {"keys": [self.public(k, kid) for k, kid in self.published]}

    @staticmethod
    def public(key: Any, kid: str) -> dict[str, Any]:
        algo = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
        return {**json.loads(algo.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


def config(**kw: Any) -> OidcConfig:
    base: dict[str, Any] = {"issuer": ISSUER, "client_id": "sluice", "redirect_uri": "https://gw/auth/callback"}
    return OidcConfig.model_validate({**base, "jwks_refetch_min_s": 30, **kw})


def token(key: Any, kid: str, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "sluice", "sub": "u1", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def keys() -> tuple[Any, Any]:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(ec.SECP256R1())


async def reason(verifier: TokenVerifier, tok: str, **kw: Any) -> str:
    with pytest.raises(SluiceError) as err:
        await verifier.verify(tok, audiences=kw.pop("audiences", ["sluice"]), **kw)
    return err.value.message


async def test_valid_tokens_and_every_refusal(keys: tuple[Any, Any]) -> None:
    rsa_key, ec_key = keys
    idp = StubIdp(config(clock_skew_s=30), Clock())
    idp.published = [(rsa_key, "k1"), (ec_key, "k2")]
    verifier = TokenVerifier(idp)
    assert (await verifier.verify(token(rsa_key, "k1"), audiences=["sluice"]))["sub"] == "u1"
    assert (await verifier.verify(token(ec_key, "k2", "ES256", nonce="n"), audiences=["sluice"], nonce="n"))["sub"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature" in await reason(verifier, token(other, "k1"))
    assert "audience" in await reason(verifier, token(rsa_key, "k1", aud="someone-else"))
    assert "issuer" in await reason(verifier, token(rsa_key, "k1", iss="https://evil.example.com"))
    now = int(time.time())
    assert "expired" in await reason(verifier, token(rsa_key, "k1", iat=now - 600, exp=now - 31))
    await verifier.verify(token(rsa_key, "k1", iat=now - 600, exp=now - 20), audiences=["sluice"])  # within skew
    assert "not valid yet" in await reason(verifier, token(rsa_key, "k1", iat=now + 120))
    assert "nonce" in await reason(verifier, token(rsa_key, "k1", nonce="a"), nonce="b")
    assert "required claim" in await reason(verifier, token(rsa_key, "k1", sub=None))
    assert "azp" in await reason(verifier, token(rsa_key, "k1", aud=["sluice", "x"], azp="x"))
    assert "algorithm" in await reason(
        verifier, jwt.encode({"iss": ISSUER}, "a-client-secret-long-enough-for-hs256!", algorithm="HS256")
    )
    unsigned = jwt.encode({"iss": ISSUER, "aud": "sluice"}, None, algorithm="none")
    assert "algorithm" in await reason(verifier, unsigned)
    assert "well-formed" in await reason(verifier, "not.a.jwt")


async def test_key_rotation_refetches_the_jwks_but_not_too_often(keys: tuple[Any, Any]) -> None:
    old, _ = keys
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    clock = Clock()
    idp = StubIdp(config(), clock)
    idp.published = [(old, "old")]
    verifier = TokenVerifier(idp)
    await verifier.verify(token(old, "old"), audiences=["sluice"])
    assert idp.fetches == 1
    clock.now += 31
    idp.published = [(old, "old"), (new, "new")]  # the provider rotates
    await verifier.verify(token(new, "new"), audiences=["sluice"])
    assert idp.fetches == 2
    for _ in range(3):  # unknown kids right after: no refetch storm
        assert "does not publish" in await reason(verifier, token(new, "garbage"))
    assert idp.fetches == 2
    clock.now += 31
    assert "does not publish" in await reason(verifier, token(new, "garbage"))
    assert idp.fetches == 3


async def test_discovery_must_name_our_issuer() -> None:
    idp = StubIdp(config(), Clock())
    idp.discovered_issuer = "https://idp.example.com/"
    with pytest.raises(SluiceError, match="names issuer"):
        await idp.discovery()


def test_claim_paths_per_provider() -> None:
    keycloak = {"realm_access": {"roles": ["admin", "dev"]}, "groups": ["/eng"]}
    assert groups_of(keycloak, "realm_access.roles") == ["admin", "dev"]
    assert groups_of(keycloak, "groups") == ["/eng"]
    assert groups_of({"roles": "Sluice.Admin"}, "roles") == ["Sluice.Admin"]  # Entra app roles
    assert groups_of({}, "groups") == []
    assert claim({"a.b": 1, "a": {"b": 2}}, "a.b") == 1
