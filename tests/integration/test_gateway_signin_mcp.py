"""/mcp takes the gateway sign-in (the MCP authorization specification: RFC 9728 protected-resource
metadata, `WWW-Authenticate: Bearer resource_metadata=...`, OAuth bearer tokens): a signed-in
person's token is their key there, with their access profile's MCP grants; a token for another
audience, an expired or revoked one, and a deactivated person's are refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.integration.mcp_support import connect, everything, require_servers
from tests.integration.signin_stack import HAIKU, SCIM_TOKEN, signin_stack
from tests.integration.test_gateway_signin import ACCOUNTS, sign_in
from tests.support import GatewayThread

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    require_servers()
    profiles = [
        {
            "id": "developers",
            "groups": ["engineering"],
            "provider_configs": [{"provider": "anthropic", "allowed_models": [HAIKU]}],
            "mcp": {"tools": ["everything/echo"]},
        }
    ]
    tmp = tmp_path_factory.mktemp("signin-mcp")
    with signin_stack(tmp, ACCOUNTS, profiles, mcp={"servers": [everything()]}) as stack:
        yield stack.gw


def initialize(gw: GatewayThread, token: str | None) -> httpx2.Response:
    auth = {"authorization": f"Bearer {token}"} if token is not None else {}
    return httpx2.post(f"{gw.base_url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **auth})


def test_protected_resource_metadata_points_at_the_sign_in(gw: GatewayThread) -> None:
    anonymous = initialize(gw, None)
    assert anonymous.status_code == 401
    challenge = anonymous.headers["www-authenticate"]
    assert challenge.startswith("Bearer resource_metadata=") and "error=" not in challenge  # RFC 6750 3.1
    url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    assert url == f"{gw.base_url}/.well-known/oauth-protected-resource/mcp"
    doc = httpx2.get(url).json()
    assert doc["resource"] == f"{gw.base_url}/mcp" and doc["authorization_servers"] == [gw.base_url]
    root = httpx2.get(f"{gw.base_url}/.well-known/oauth-protected-resource").json()
    assert root["resource"] == gw.base_url  # the gateway as a whole: /mcp is under it
    server = httpx2.get(f"{doc['authorization_servers'][0]}/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == gw.base_url and server["token_endpoint"] == f"{gw.base_url}/oauth/token"


async def _tools(gw: GatewayThread, token: str) -> tuple[list[str], str]:
    http, client = connect(gw, token)
    async with http, client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        echoed = await client.call_tool("everything__echo", {"message": "signed in"})
        return names, str(echoed.content[0].text)  # type: ignore[union-attr]


def test_a_signed_in_persons_token_has_their_profiles_mcp_grants(gw: GatewayThread) -> None:
    tokens = sign_in(gw, "dana")
    names, echoed = gw.call(_tools(gw, tokens["access_token"]))
    assert names == ["everything__echo"] and "signed in" in echoed  # the profile's grant, no more


def _mint(gw: GatewayThread, tokens: dict[str, Any], **changes: Any) -> str:
    """The same claims as a real token, re-signed with the gateway's own secret and changed."""
    signer = gw.services.identity.signer
    assert signer is not None
    claims = signer.verify("gateway-access", tokens["access_token"].removeprefix("sgw."))
    assert claims is not None
    now = changes.pop("now", time.time())
    ttl = changes.pop("ttl", 900)
    purpose = changes.pop("purpose", "gateway-access")
    claims = {k: v for k, v in claims.items() if k != "exp"} | changes
    return "sgw." + signer.sign(purpose, claims, ttl, now=now)


def test_tokens_for_another_audience_or_past_expiry_are_refused(gw: GatewayThread) -> None:
    tokens = sign_in(gw, "rita")
    assert initialize(gw, tokens["access_token"]).status_code == 200
    assert initialize(gw, _mint(gw, tokens)).status_code == 200  # the minting itself is faithful
    hostile = {
        "another gateway sharing the secret": _mint(gw, tokens, aud="https://other-gateway.example"),
        "no audience at all": _mint(gw, tokens, aud=None),
        "signed for another purpose": _mint(gw, tokens, purpose="device-browser"),
        "expired an hour ago": _mint(gw, tokens, now=time.time() - 3600),
        "a refresh token": tokens["refresh_token"],
    }
    for why, token in hostile.items():
        refused = initialize(gw, token)
        assert refused.status_code == 401, why
        assert 'error="invalid_token"' in refused.headers["www-authenticate"], why


def test_revoked_and_deactivated_sign_ins_are_refused_at_the_next_request(gw: GatewayThread) -> None:
    tokens = sign_in(gw, "dana")
    assert initialize(gw, tokens["access_token"]).status_code == 200
    assert httpx2.post(f"{gw.base_url}/oauth/revoke", data={"token": tokens["refresh_token"]}).status_code == 200
    assert initialize(gw, tokens["access_token"]).status_code == 401

    scim = httpx2.Client(base_url=f"{gw.base_url}/scim/v2", headers={"authorization": f"Bearer {SCIM_TOKEN}"})
    with scim:
        uid = scim.post("/Users", json={"userName": "sid@example.com", "externalId": "00u-sid"}).json()["id"]
        scim.post("/Groups", json={"displayName": "engineering", "members": [{"value": uid}]})
        sid = sign_in(gw, "00u-sid")
        assert initialize(gw, sid["access_token"]).status_code == 200
        off = {"Operations": [{"op": "replace", "value": {"active": False}}]}
        assert scim.patch(f"/Users/{uid}", json=off).status_code == 200
    assert initialize(gw, sid["access_token"]).status_code in (401, 403)
