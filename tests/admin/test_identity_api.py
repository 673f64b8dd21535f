"""Identity through the admin API: access profiles (live: derived keys change on the next request),
users from the directory and their keys, deactivation revoking keys as SCIM does, and SSO
principals (OIDC bearer, session cookie) with teams from `auth.oidc.team_mapping` and the `self`
scope over their own keys and spend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from sluice.app import Services
from sluice.auth.admin_tokens import BootstrapAuthenticator
from sluice.auth.directory import GROUP, SUBJECT, USER
from sluice.auth.principal import Principal
from sluice.http.server import SluiceASGI
from sluice.storage.records import RequestLogEntry, VirtualKey
from tests.admin.conftest import BOOTSTRAP, Client, admin_config, as_role, start

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
ISSUER = "https://idp.example.test"


async def chat(c: Client, secret: str, model: str) -> int:
    return (await c.post("/v1/chat/completions", json={**CHAT, "model": model}, token=secret)).status


# -- access profiles --------------------------------------------------------------------------------
async def test_access_profiles_crud_is_live_and_recorded(admin: tuple[Services, Client]) -> None:
    services, c = admin
    profile = {"id": "devs", "groups": ["engineering"], "provider_configs": [{"provider": "fake"}]}
    r = await c.post("/api/access-profiles", json={**profile, "provider_configs": [{"provider": "fake", "x": 1}]})
    assert r.status == 422  # validated by AccessProfileConfig
    r = await c.post("/api/access-profiles", json=profile)
    assert r.status == 201, r.body
    assert (await c.get("/api/access-profiles/devs")).json()["body"]["groups"] == ["engineering"]
    made = await c.post("/api/keys", json={"id": "vk-dev", "user_id": "u-dev", "profile_id": "devs"})
    secret = made.json()["secret"]
    assert await chat(c, secret, "fake/echo") == 200
    # Narrow the profile: the derived key changes on the very next request.
    narrowed = {**profile, "provider_configs": [{"provider": "fake", "allowed_models": ["other"]}]}
    assert (await c.put("/api/access-profiles/devs", json=narrowed)).status == 200
    assert await chat(c, secret, "fake/echo") == 403
    # A per-key budget of the profile applies to the derived key at once.
    budgeted = {**profile, "budgets": [{"id": "daily", "max_limit": 5, "reset_duration": "1d"}]}
    assert (await c.put("/api/access-profiles/devs", json=budgeted)).status == 200
    key = await services.store.key_by_id("vk-dev")
    assert key is not None and [r.id for r in services.limits.rules_for(key)] == ["devs/daily@vk-dev"]
    assert await chat(c, secret, "fake/echo") == 200
    assert (await c.delete("/api/access-profiles/devs")).status == 204
    assert await chat(c, secret, "fake/echo") == 403  # a key whose profile is gone may do nothing
    events = (await c.get("/api/config/events", query={"kind": "access_profile"})).json()["items"]
    assert [e["action"] for e in events] == ["delete", "update", "update", "create"]
    records = [rec async for rec in services.store.audit_records()]
    assert any(rec.kind == "config_change" and rec.data["object"] == "access_profile" for rec in records)


async def test_a_profile_whose_rules_cannot_be_built_is_refused(admin: tuple[Services, Client]) -> None:
    """Each derived key's rule is a RateLimitConfig: a profile rule that is not one is a 422, not a
    stored object that makes every reload of the limits fail."""
    services, c = admin
    for rule in ({"id": "r"}, {"id": "r", "token_max_limit": 5}, {"id": "r", "request_reset_duration": "1m"}):
        r = await c.post("/api/access-profiles", json={"id": "p", "rate_limits": [rule]})
        assert r.status == 422, (rule, r.body)
    assert (
        await c.post("/api/budgets", json={"id": "b", "team_id": "t", "max_limit": 1, "reset_duration": "1d"})
    ).status == 201
    assert [rule.id for rule in services.limits.rules_for(VirtualKey("k", "k", "h", "h", team_id="t"))] == ["b"]


async def test_access_profiles_rbac(admin: tuple[Services, Client]) -> None:
    _, c = admin
    assert (await c.post("/api/access-profiles", json={"id": "p"})).status == 201
    assert (await c.get("/api/access-profiles", token=as_role("viewer"))).status == 200
    assert (await c.get("/api/access-profiles", token=as_role("developer", "", "u"))).status == 403
    assert (await c.put("/api/access-profiles/p", json={"id": "p"}, token=as_role("team-lead", "t"))).status == 403


async def test_another_replica_follows_a_profile_change(tmp_path: Path) -> None:
    first, c = await start(admin_config(tmp_path))
    second, c2 = await start(admin_config(tmp_path))
    try:
        await c.put("/api/access-profiles/p", json={"id": "p", "provider_configs": [{"provider": "fake"}]})
        secret = (await c.post("/api/keys", json={"id": "vk", "profile_id": "p"})).json()["secret"]
        for _ in range(60):  # the other replica's key cache follows the new key
            if await chat(c2, secret, "fake/echo") == 200:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the other replica did not load the key within 3 s")
        await c.put("/api/access-profiles/p", json={"id": "p", "provider_configs": [{"provider": "nope"}]})
        for _ in range(60):
            if await chat(c2, secret, "fake/echo") == 403:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the other replica did not re-derive the key within 3 s")
    finally:
        await second.stop()
        await first.stop()


# -- users ------------------------------------------------------------------------------------------
async def people(services: Services) -> None:
    directory = services.identity.directory
    await directory.put(USER, "u-dave", {"userName": "dave@example.com", "active": True}, "scim")
    await directory.put(USER, "u-erin", {"userName": "erin@example.com", "active": True}, "scim")
    await directory.put(GROUP, "g-eng", {"displayName": "engineering", "members": [{"value": "u-dave"}]}, "scim")


async def test_users_list_get_and_keys_by_role(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await people(services)
    await c.post("/api/keys", json={"id": "vk-dave", "user_id": "u-dave", "team_id": "team-a"})
    await c.post("/api/keys", json={"id": "vk-erin", "user_id": "u-erin"})
    for role in ("admin", "security-auditor", "viewer"):
        r = await c.get("/api/users", token=BOOTSTRAP if role == "admin" else as_role(role))
        assert [u["id"] for u in r.json()["items"]] == ["u-dave", "u-erin"], role
    mine = await c.get("/api/users", token=as_role("developer", "", "u-dave"))
    assert [(u["id"], u["groups"]) for u in mine.json()["items"]] == [("u-dave", ["engineering"])]
    dave = (await c.get("/api/users/u-dave", token=as_role("developer", "", "u-dave"))).json()
    assert dave["user_name"] == "dave@example.com" and dave["groups"] == ["engineering"] and dave["active"]
    assert (await c.get("/api/users/u-erin", token=as_role("developer", "", "u-dave"))).status == 403
    keys = await c.get("/api/users/u-dave/keys", token=as_role("developer", "", "u-dave"))
    assert [k["id"] for k in keys.json()["items"]] == ["vk-dave"]
    assert (await c.get("/api/users/u-erin/keys", token=as_role("developer", "", "u-dave"))).status == 403
    assert [k["id"] for k in (await c.get("/api/users/u-erin/keys")).json()["items"]] == ["vk-erin"]
    assert (await c.get("/api/users/nobody")).status == 404


async def test_deactivating_a_user_revokes_their_keys_as_scim_does(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await people(services)
    secret = await c.post("/api/keys", json={"id": "vk-dave", "user_id": "u-dave", "grants": [{"provider": "fake"}]})
    token = secret.json()["secret"]
    assert await chat(c, token, "fake/echo") == 200
    assert (await c.post("/api/users/u-dave/deactivate", token=as_role("viewer"))).status == 403
    r = await c.post("/api/users/u-dave/deactivate")
    assert r.status == 200, r.body
    assert r.json()["revoked_keys"] == 1 and r.json()["user"]["active"] is False
    assert await chat(c, token, "fake/echo") == 403  # the very next call is refused
    body = await services.identity.directory.get(USER, "u-dave")
    assert body is not None and body["active"] is False
    records = [rec async for rec in services.store.audit_records()]
    assert any(rec.kind == "key_revoked" and rec.data["virtual_key"] == "vk-dave" for rec in records)
    events = (await c.get("/api/config/events", query={"kind": "user", "object_id": "u-dave"})).json()["items"]
    assert events[0]["action"] == "update" and events[0]["after"]["active"] is False


# -- single sign-on principals ----------------------------------------------------------------------
class StubVerifier:
    """Stands in for the signature and claim checks (tested with a real provider in
    tests/integration/test_sso.py): the token's claims, as a verified token's."""

    async def verify(self, token: str, *, audiences: list[str], nonce: str | None = None) -> dict[str, Any]:
        return dict(jwt.decode(token, options={"verify_signature": False}))


def id_token(sub: str, groups: list[str], **claims: Any) -> str:
    return jwt.encode({"iss": ISSUER, "sub": sub, "aud": "sluice", "groups": groups, **claims}, "k" * 32)


@pytest.fixture
async def sso(tmp_path: Path) -> AsyncIterator[tuple[Services, Client]]:
    config = admin_config(tmp_path)
    config["auth"] = {
        "oidc": {
            "issuer": ISSUER,
            "client_id": "sluice",
            "redirect_uri": "https://sluice.example.test/auth/callback",
            "role_mapping": {"leads-a": ["team-lead"], "engineering": ["developer"]},
            "team_mapping": {"LEADS-A": ["team-a"]},
        },
        "session": {"secret": "session-secret-0123456789"},
    }
    services, _ = await start(config)
    assert services.identity.bearer is not None
    services.identity.bearer._verifier = StubVerifier()  # type: ignore[assignment]
    auth = [
        *services.identity.authenticators,
        BootstrapAuthenticator(services.store, env={"SLUICE_ADMIN_TOKEN": BOOTSTRAP}),
    ]
    try:
        yield services, Client(SluiceASGI(services, admin_authenticators=auth))
    finally:
        await services.stop()


async def test_sso_team_lead_manages_their_teams_keys_only(sso: tuple[Services, Client]) -> None:
    services, c = sso
    await c.post("/api/keys", json={"id": "vk-a", "team_id": "team-a"})
    await c.post("/api/keys", json={"id": "vk-b", "team_id": "team-b"})
    lead = id_token("sub-lena", ["leads-a"])
    me = (await c.get("/api/me", token=lead)).json()
    assert me["roles"] == ["team-lead"] and me["teams"] == ["team-a"]
    assert [k["id"] for k in (await c.get("/api/keys", token=lead)).json()["items"]] == ["vk-a"]
    assert (await c.post("/api/keys/vk-a/rotate", token=lead)).status == 200
    assert (await c.post("/api/keys/vk-b/rotate", token=lead)).status == 403
    assert (await c.post("/api/keys/vk-b/revoke", token=lead)).status == 403
    made = await c.post("/api/keys", json={"id": "vk-a2", "team_id": "team-a"}, token=lead)
    assert made.status == 201
    assert (await c.post("/api/keys", json={"id": "vk-b2", "team_id": "team-b"}, token=lead)).status == 403
    # The session cookie carries the teams as it carries the roles.
    principal = Principal("u-lena", frozenset({"team-lead"}), "oidc", user_id=None, teams=frozenset({"team-a"}))
    cookie = services.identity.sessions.issue(principal).split(";")[0]
    r = await c.get("/api/keys", token=None, headers={"cookie": cookie})
    assert r.status == 200 and [k["id"] for k in r.json()["items"]] == ["vk-a", "vk-a2"]
    csrf = {"cookie": cookie, "x-sluice-csrf": "1"}
    refused = await c.post("/api/keys/vk-a/revoke", token=None, headers={"cookie": cookie})
    assert refused.status == 403 and "x-sluice-csrf" in refused.json()["error"]["message"]
    assert (await c.post("/api/keys/vk-a/revoke", token=None, headers=csrf)).status == 200
    assert (await c.post("/api/keys/vk-b/revoke", token=None, headers=csrf)).status == 403


async def test_sso_developer_sees_and_rotates_their_own_key(sso: tuple[Services, Client]) -> None:
    services, c = sso
    directory = services.identity.directory
    # Provisioned by SCIM, not yet signed in: linked by userName = the email claim.
    await directory.put(USER, "u-dave", {"userName": "dave@example.com", "active": True}, "scim")
    await directory.put(USER, "u-erin", {"userName": "erin@example.com", "active": True, SUBJECT: "sub-erin"}, "scim")
    await c.post("/api/keys", json={"id": "vk-dave", "user_id": "u-dave", "grants": [{"provider": "fake"}]})
    await c.post("/api/keys", json={"id": "vk-erin", "user_id": "u-erin"})
    await services.store.insert_requests(
        [
            RequestLogEntry(
                request_id=f"r-{n}",
                ts=datetime.now(UTC),
                path="/v1/chat/completions",
                surface="openai_chat",
                status=200,
                decision="allow",
                virtual_key_id=key,
                cost_pico=10**12,
            )
            for n, key in enumerate(["vk-dave", "vk-erin"])
        ]
    )
    dave = id_token("sub-dave", ["engineering"], email="dave@example.com", email_verified=True)
    me = (await c.get("/api/me", token=dave)).json()
    assert me["user_id"] == "u-dave" and me["roles"] == ["developer"]
    assert [k["id"] for k in (await c.get("/api/keys", token=dave)).json()["items"]] == ["vk-dave"]
    assert [k["id"] for k in (await c.get("/api/users/u-dave/keys", token=dave)).json()["items"]] == ["vk-dave"]
    spend = (await c.get("/api/spend", query={"group_by": "key"}, token=dave)).json()
    assert [row["group"] for row in spend["rows"]] == ["vk-dave"]
    rotated = await c.post("/api/keys/vk-dave/rotate", json={"overlap_seconds": 0}, token=dave)
    assert rotated.status == 200, rotated.body
    assert await chat(c, rotated.json()["secret"], "fake/echo") == 200
    assert (await c.post("/api/keys/vk-erin/rotate", token=dave)).status == 403
    assert (await c.get("/api/keys/vk-erin", token=dave)).status == 403
    # Erin signed in before (linked by sub): her session sees her key only.
    erin = Principal("u-erin", frozenset({"developer"}), "oidc", user_id="u-erin")
    cookie = services.identity.sessions.issue(erin).split(";")[0]
    r = await c.get("/api/keys", token=None, headers={"cookie": cookie})
    assert [k["id"] for k in r.json()["items"]] == ["vk-erin"]


async def test_me_key_reissues_only_the_persons_own_key(sso: tuple[Services, Client]) -> None:
    services, c = sso
    directory = services.identity.directory
    await directory.put(USER, "u-dave", {"userName": "dave@example.com", "active": True}, "scim")
    # An operator attaches a key of theirs to Dave: it is not Dave's to reissue.
    attached = await c.post("/api/keys", json={"id": "vk-ops", "user_id": "u-dave", "grants": [{"provider": "fake"}]})
    ops_secret = attached.json()["secret"]
    dave = Principal("u-dave", frozenset({"developer"}), "oidc", user_id="u-dave")
    session = {"cookie": services.identity.sessions.issue(dave).split(";")[0], "x-sluice-csrf": "1"}
    refused = await c.post("/auth/me/key", token=None, headers=session)
    assert refused.status == 404 and "self-service" in refused.json()["error"]["message"]
    assert await chat(c, ops_secret, "fake/echo") == 200  # untouched
    # Once his groups give him a profile, the directory allocates his own key (the attached one
    # is neither re-profiled nor taken for it), and that is the one /auth/me/key reissues.
    await c.post("/api/access-profiles", json={"id": "devs", "groups": ["engineering"], "provider_configs": []})
    await directory.put(GROUP, "g-eng", {"displayName": "engineering", "members": [{"value": "u-dave"}]}, "scim")
    own, _ = await directory.sync_key("u-dave", "scim")
    assert own is not None and own.id != "vk-ops" and own.profile_id == "devs"
    ops = await services.store.key_by_id("vk-ops")
    assert ops is not None and ops.profile_id is None
    reissued = await c.post("/auth/me/key", token=None, headers=session)
    assert reissued.status == 200 and reissued.json()["id"] == own.id
    assert await chat(c, ops_secret, "fake/echo") == 200


async def test_forged_sign_in_callbacks_are_throttled_and_counted(sso: tuple[Services, Client]) -> None:
    services, c = sso
    replies = [await c.get("/auth/callback", query={"code": "x", "state": "forged"}, token=None) for _ in range(100)]
    assert [r.status for r in replies] == [401] * 30 + [429] * 70  # auth.guard's default burst
    assert int(replies[-1].headers["retry-after"]) >= 1
    assert services.guard is not None
    await services.guard.flush(force=True)
    await services.audit.drain()
    found = [r.data async for r in services.store.audit_records() if r.kind == "auth_failure"]
    assert {(d["surface"], d["reason"]) for d in found} == {("sign-in", "invalid_credential"), ("sign-in", "throttled")}
    assert len(found) <= 4 and sum(d["count"] for d in found) == 100
