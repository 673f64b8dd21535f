"""The MCP authorization server for /mcp (sluice.gateway_signin.authcode): RFC 7591 registration,
authorization code with PKCE S256 and an RFC 8707 resource, as an MCP client (the real Claude Code's
requests are the fixture) runs it against Sluice and the real oidc-provider; and every abuse each
step must refuse: a wrong verifier, a replayed code, a code for another client or redirect, open
redirects, missing or plain PKCE, the wrong resource, hostile registrations."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from sluice.gateway_signin.service import OAuthError
from sluice.storage.grants import OAuthClient
from tests.integration.mcp_support import connect, everything, require_servers
from tests.integration.oidc_support import pkce
from tests.integration.signin_stack import HAIKU, SigninStack, authorize_in_browser, signin_stack, through_provider

FIXTURE = Path(__file__).parent.parent / "fixtures" / "claude_gateway" / "mcp_oauth.json"
ACCOUNTS = {
    "dana": {"email": "dana@example.com", "name": "Dana Dev", "groups": ["engineering"]},
    "olga": {"email": "olga@example.com", "name": "Olga Outsider", "groups": ["sales"]},
}
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigninStack]:
    require_servers()
    profiles = [
        {
            "id": "developers",
            "groups": ["engineering"],
            "provider_configs": [{"provider": "anthropic", "allowed_models": [HAIKU]}],
            "mcp": {"tools": ["everything/echo"]},
        }
    ]
    tmp = tmp_path_factory.mktemp("mcp-authz")
    with signin_stack(
        tmp, ACCOUNTS, profiles, signin={"registrations_per_hour": 5}, mcp={"servers": [everything()]}
    ) as s:
        yield s


def claude_code_registration(port: int = 56687) -> dict[str, Any]:
    """What Claude Code 2.1.332 registers (captured), with its listener's port."""
    [exchange] = [e for e in json.loads(FIXTURE.read_text())["exchanges"] if e["path"] == "/oauth/register"]
    doc = dict(exchange["request"]["json"])
    doc["redirect_uris"] = [f"http://localhost:{port}/callback"]
    return doc


def register(stack: SigninStack, doc: object, **headers: str) -> httpx2.Response:
    return httpx2.post(
        f"{stack.base}/oauth/register", content=json.dumps(doc), headers={"content-type": "application/json", **headers}
    )


class Client:
    """One registered MCP client and one authorization request of it."""

    def __init__(self, stack: SigninStack, port: int = 56687) -> None:
        self.stack = stack
        doc = claude_code_registration(port)
        # Each from its own address in the registration count (the bound is per address).
        answer = gw_call(stack, stack.gw.services.identity.codes.register(doc, f"198.51.100.{port % 250}"))  # type: ignore[union-attr]
        self.client_id: str = answer["client_id"]
        self.redirect_uri: str = doc["redirect_uris"][0]
        self.verifier, self.challenge = pkce()

    def query(self, **changes: str | None) -> dict[str, str]:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            "redirect_uri": self.redirect_uri,
            "state": "st-123",
            "resource": f"{self.stack.base}/mcp",
        } | changes
        return {k: v for k, v in query.items() if v is not None}

    def url(self, **changes: str | None) -> str:
        return f"{self.stack.base}/authorize?{urlencode(self.query(**changes))}"

    def code(self, login: str = "dana") -> str:
        back = authorize_in_browser(self.stack.base, self.url(), login, self.redirect_uri)
        params = redirect_params(back, self.redirect_uri)
        assert params["state"] == "st-123" and params["iss"] == self.stack.base, params
        return params["code"]

    def exchange(self, code: str, **changes: str | None) -> httpx2.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier,
            "resource": f"{self.stack.base}/mcp",
        } | changes
        return httpx2.post(f"{self.stack.base}/oauth/token", data={k: v for k, v in form.items() if v is not None})


def gw_call(stack: SigninStack, coro: Any) -> Any:
    return stack.gw.call(coro)


def redirect_params(resp: httpx2.Response, redirect_uri: str) -> dict[str, str]:
    assert resp.status_code == 303, (resp.status_code, resp.text)
    location = resp.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def initialize(stack: SigninStack, token: str) -> httpx2.Response:
    return httpx2.post(
        f"{stack.base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
    )


def messages(stack: SigninStack, token: str) -> httpx2.Response:
    body = {"model": HAIKU, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    return httpx2.post(f"{stack.base}/v1/messages", json=body, headers=headers)


def test_metadata_advertises_the_code_flow_beside_the_device_flow(stack: SigninStack) -> None:
    doc = httpx2.get(f"{stack.base}/.well-known/oauth-authorization-server").json()
    assert doc["authorization_endpoint"] == f"{stack.base}/authorize"
    assert doc["registration_endpoint"] == f"{stack.base}/oauth/register"
    assert doc["code_challenge_methods_supported"] == ["S256"]  # plain is never offered
    assert {"authorization_code", "refresh_token", DEVICE_GRANT} <= set(doc["grant_types_supported"])
    assert doc["device_authorization_endpoint"] == f"{stack.base}/oauth/device_authorization"


async def _tools(stack: SigninStack, token: str) -> list[str]:
    http, client = connect(stack.gw, token)
    async with http, client:
        return sorted(t.name for t in (await client.list_tools()).tools)


def test_the_code_flow_gives_a_token_for_mcp_only(stack: SigninStack) -> None:
    answer = register(stack, claude_code_registration())
    assert answer.status_code == 201, answer.text
    registered = answer.json()
    assert registered["client_id"].startswith("mcp_") and registered["token_endpoint_auth_method"] == "none"
    assert registered["redirect_uris"] == ["http://localhost:56687/callback"]

    client = Client(stack, 50001)
    tokens = client.exchange(client.code()).json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"].startswith("sgr."), tokens
    assert initialize(stack, tokens["access_token"]).status_code == 200
    assert stack.gw.call(_tools(stack, tokens["access_token"])) == ["everything__echo"]  # the profile's grant
    # RFC 8707: its audience is /mcp; the model API (another resource) refuses it.
    assert messages(stack, tokens["access_token"]).status_code == 401

    refreshed = httpx2.post(
        f"{stack.base}/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    again = refreshed.json()["access_token"]
    assert initialize(stack, again).status_code == 200 and messages(stack, again).status_code == 401


def test_a_replayed_code_is_refused_and_ends_what_it_gave(stack: SigninStack) -> None:
    client = Client(stack, 50002)
    code = client.code()
    first = client.exchange(code)
    assert first.status_code == 200
    replay = client.exchange(code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # OAuth 2.1 4.1.3: the tokens the code gave are revoked with it.
    assert initialize(stack, first.json()["access_token"]).status_code == 401


def test_a_code_is_bound_to_its_verifier_client_redirect_and_resource(stack: SigninStack) -> None:
    client = Client(stack, 50003)
    other = Client(stack, 50004)
    hostile: dict[str, dict[str, str | None]] = {
        "a wrong verifier": {"code_verifier": pkce()[0]},
        "no verifier": {"code_verifier": None},
        "the challenge sent as verifier (plain)": {"code_verifier": client.challenge},
        "another registered client": {"client_id": other.client_id},
        "no client": {"client_id": None},
        "another redirect URI": {"redirect_uri": "http://localhost:56688/callback"},
        "another resource": {"resource": f"{stack.base}/v1/messages"},
    }
    for why, changes in hostile.items():
        code = client.code()
        refused = client.exchange(code, **changes)
        assert refused.status_code == 400, why
        assert refused.json()["error"] in ("invalid_grant", "invalid_target"), why
        # One try: the code is spent even with the right values afterwards.
        assert client.exchange(code).status_code == 400, why
    device = httpx2.post(f"{stack.base}/oauth/token", data={"grant_type": DEVICE_GRANT, "device_code": client.code()})
    assert (
        device.status_code == 400 and device.json()["error"] == "invalid_grant"
    )  # no PKCE bypass via the device grant
    auth = httpx2.post(f"{stack.base}/oauth/device_authorization", data={"surface": "claude_code"}).json()
    assert client.exchange(auth["device_code"]).json()["error"] == "invalid_grant"  # nor the other way round


def test_authorize_never_redirects_to_an_unregistered_address(stack: SigninStack) -> None:
    client = Client(stack, 50005)
    hostile = {
        "an unknown client": client.url(client_id="mcp_not-registered"),
        "no client": client.url(client_id=None),
        "another host": client.url(redirect_uri="https://evil.example/callback"),
        "another port": client.url(redirect_uri="http://localhost:50006/callback"),
        "another path": client.url(redirect_uri="http://localhost:50005/callback/../evil"),
        "a prefix of it": client.url(redirect_uri="http://localhost:50005/callbac"),
        "no redirect": client.url(redirect_uri=None),
    }
    for why, url in hostile.items():
        page = httpx2.get(url)
        assert page.status_code == 400 and "location" not in page.headers, why


def test_authorize_refusals_go_back_to_the_client_with_its_state(stack: SigninStack) -> None:
    client = Client(stack, 50007)
    hostile = {
        "no PKCE": ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        "plain PKCE": ({"code_challenge_method": "plain"}, "invalid_request"),
        "no method (means plain)": ({"code_challenge_method": None}, "invalid_request"),
        "a malformed challenge": ({"code_challenge": "short"}, "invalid_request"),
        "no resource": ({"resource": None}, "invalid_target"),
        "the gateway as a whole": ({"resource": stack.base}, "invalid_target"),
        "another server": ({"resource": "https://mcp.example.com/mcp"}, "invalid_target"),
        "the model API": ({"resource": f"{stack.base}/v1/messages"}, "invalid_target"),
        "implicit flow": ({"response_type": "token"}, "unsupported_response_type"),
    }
    for why, (changes, error) in hostile.items():
        params = redirect_params(httpx2.get(client.url(**changes)), client.redirect_uri)
        assert params["error"] == error and params["state"] == "st-123", why
    repeated = httpx2.get(client.url() + "&resource=https%3A%2F%2Fevil.example%2Fmcp")
    assert redirect_params(repeated, client.redirect_uri)["error"] == "invalid_request"


def test_consent_is_same_origin_from_the_browser_that_started(stack: SigninStack) -> None:
    client = Client(stack, 50008)
    with httpx2.Client(timeout=20) as browser:
        page = through_provider(browser, browser.get(client.url()), "dana")
        assert 'action="/authorize/consent"' in page.text and "Claude Code" in page.text
        assert "form-action 'self' http://localhost:50008" in page.headers["content-security-policy"]
        for origin in ({}, {"origin": "https://evil.example"}):
            assert browser.post(f"{stack.base}/authorize/consent", headers=origin).status_code == 403
        other = httpx2.Client()
        for cookie in browser.cookies.jar:
            if cookie.name != "sluice_authorize":
                other.cookies.jar.set_cookie(cookie)
        with other:  # signed in, but not where the request started
            assert other.post(f"{stack.base}/authorize/consent", headers={"origin": stack.base}).status_code == 400
        denied = browser.post(f"{stack.base}/authorize/deny", headers={"origin": stack.base})
        assert redirect_params(denied, client.redirect_uri) == {
            "error": "access_denied",
            "state": "st-123",
            "iss": stack.base,
        }


def test_a_person_without_a_profile_is_sent_back_refused(stack: SigninStack) -> None:
    client = Client(stack, 50009)
    back = authorize_in_browser(stack.base, client.url(), "olga", client.redirect_uri)
    assert redirect_params(back, client.redirect_uri)["error"] == "access_denied"


def test_hostile_registrations_are_refused(stack: SigninStack) -> None:
    good = claude_code_registration()
    uris = {
        "http to a host elsewhere": "http://evil.example/callback",
        "a script": "javascript:alert(1)",
        "a data URI": "data:text/html,hi",
        "user info before a loopback name": "http://localhost@evil.example/callback",
        "a loopback-looking host": "http://127.0.0.1.evil.example/callback",
        "a fragment": "https://app.example/callback#x",
        "a bad port": "http://localhost:99999/callback",
        "a backslash": "http://localhost\\@evil.example/",
        "a space": "http://localhost/ callback",
        "no host": "https:///callback",
        "too long": "https://app.example/" + "a" * 600,
    }
    for why, uri in uris.items():
        refused = register(stack, good | {"redirect_uris": [uri]})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri", why
    metadata = {
        "no redirect URIs": good | {"redirect_uris": []},
        "not a list": good | {"redirect_uris": "http://localhost:1/callback"},
        "too many": good | {"redirect_uris": [f"http://localhost:{p}/callback" for p in range(6)]},
        "a confidential client": good | {"token_endpoint_auth_method": "client_secret_basic"},
        "another grant": good | {"grant_types": ["client_credentials"]},
        "implicit": good | {"response_types": ["token"]},
        "not an object": [good],
    }
    for why, doc in metadata.items():
        refused = register(stack, doc)
        assert refused.status_code == 400 and refused.json()["error"] in (
            "invalid_redirect_uri",
            "invalid_client_metadata",
        ), why
    huge = register(stack, good | {"client_name": "x" * 9000})
    assert huge.status_code == 413
    form = httpx2.post(f"{stack.base}/oauth/register", data={"redirect_uris": "http://localhost:1/callback"})
    assert form.status_code == 400
    named = register(stack, good | {"client_name": "Claude\x1b[31m Code\u202e"}).json()
    assert named["client_name"] == "Claude[31m Code"  # control and bidi characters dropped


def test_registrations_are_bounded_per_address_and_in_all(stack: SigninStack) -> None:
    codes = stack.gw.services.identity.codes
    assert codes is not None
    doc = claude_code_registration()
    for _ in range(5):  # registrations_per_hour: 5 in this stack
        stack.gw.call(codes.register(doc, "203.0.113.7"))
    with pytest.raises(OAuthError) as refused:
        stack.gw.call(codes.register(doc, "203.0.113.7"))
    assert refused.value.status == 429
    stack.gw.call(codes.register(doc, "203.0.113.8"))  # another address still may
    store = stack.gw.services.store
    now = time.time()
    extra = OAuthClient("mcp_x", "x", ("http://localhost:1/callback",), now, "203.0.113.9")
    assert stack.gw.call(store.create_client(extra, most=1, most_from_address=100, since=0.0)) is False  # full


def test_two_exchanges_racing_for_one_code_give_one_token(stack: SigninStack) -> None:
    client = Client(stack, 50010)
    codes = stack.gw.services.identity.codes
    assert codes is not None
    form = {
        "code": client.code(),
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "code_verifier": client.verifier,
    }

    class BothRead:
        """The store, with both exchanges' reads done before either writes: the race at its worst."""

        def __init__(self, store: Any) -> None:
            self.store, self.barrier = store, asyncio.Barrier(2)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

        async def grant_by(self, column: str, value: str) -> Any:
            found = await self.store.grant_by(column, value)
            await self.barrier.wait()
            return found

    async def race() -> list[object]:
        store = codes._store
        codes._store = BothRead(store)
        try:
            return await asyncio.gather(codes.exchange(form), codes.exchange(form), return_exceptions=True)
        finally:
            codes._store = store

    outcomes = stack.gw.call(race())
    assert sorted(type(o).__name__ for o in outcomes) == ["OAuthError", "Tokens"]  # compare-and-set: one wins


def _from(address: str) -> httpx2.Client:
    """A client at its own loopback address: its failure budget is its own (the guard's is per
    address), so guessing here never throttles the other tests' 127.0.0.1."""
    return httpx2.Client(transport=httpx2.HTTPTransport(local_address=address), timeout=20)


def _failures(stack: SigninStack, address: str) -> dict[str, int]:
    """reason -> failures the audit log records for `address` on /authorize and the code grant."""
    guard = stack.gw.services.guard
    assert guard is not None
    stack.gw.call(guard.flush(force=True))  # the counted repeats, written now

    async def read() -> dict[str, int]:
        found: dict[str, int] = {}
        async for r in stack.gw.services.store.audit_records():
            if r.kind == "auth_failure" and r.data["surface"] == "mcp-authorize" and r.data["address"] == address:
                found[r.data["reason"]] = found.get(r.data["reason"], 0) + r.data["count"]
        return found

    return dict(stack.gw.call(read()))


def test_guessing_clients_at_authorize_is_counted_and_throttled(stack: SigninStack) -> None:
    client = Client(stack, 50011)
    where = "127.0.0.21"
    statuses: list[int] = []
    with _from(where) as http:
        http.get(client.url(redirect_uri="http://localhost:50012/callback"))  # a redirect it did not register
        for n in range(40):
            resp = http.get(client.url(client_id=f"mcp_guess-{n}"))
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                break
        assert statuses[0] == 400 and statuses[-1] == 429 and set(statuses[:-1]) == {400}, statuses
        assert "location" not in resp.headers and int(resp.headers["retry-after"]) >= 1
        # Now even the real client waits, on a page here (never redirected, nothing checked).
        right = http.get(client.url())
        assert right.status_code == 429 and "location" not in right.headers
    assert _failures(stack, where) == {
        "unregistered_redirect_uri": 1,
        "unknown_client": len(statuses) - 1,
        "throttled": 2,
    }
    # Another address is not throttled by this one.
    assert redirect_params(httpx2.get(client.url(code_challenge_method="plain")), client.redirect_uri)


def test_guessing_codes_at_the_token_endpoint_is_counted_and_throttled(stack: SigninStack) -> None:
    client = Client(stack, 50013)
    spoiled, kept = client.code(), client.code()
    where = "127.0.0.22"
    statuses: list[int] = []
    with _from(where) as http:

        def exchange(code: str, **changes: str) -> httpx2.Response:
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client.client_id,
                "redirect_uri": client.redirect_uri,
                "code_verifier": client.verifier,
            } | changes
            return http.post(f"{stack.base}/oauth/token", data=form)

        wrong = exchange(spoiled, code_verifier=pkce()[0])
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        for n in range(40):
            resp = exchange(f"guess-{n:04d}-" + "x" * 32)
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {400}, statuses
        assert resp.json()["error"] == "temporarily_unavailable" and int(resp.headers["retry-after"]) >= 1
        assert resp.headers["cache-control"] == "no-store"
        # Guessing does not get cheaper by mixing in a real code: it waits too, unspent.
        assert exchange(kept).status_code == 429
    assert _failures(stack, where) == {"invalid_authorization_code": len(statuses), "throttled": 2}
    tokens = client.exchange(kept)  # from 127.0.0.1: the code the throttled address sent still works
    assert tokens.status_code == 200, tokens.text
