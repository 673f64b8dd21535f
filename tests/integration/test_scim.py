"""SCIM provisioning and deprovisioning as Okta and Entra send it, through the real gateway: the
key allocated from the person's access profile works, and stops working on the very next call
once the directory deactivates or deletes them. Then: editing a profile changes derived keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from sluice.core.errors import ErrorKind, SluiceError
from sluice.storage.records import ConfigObject, VirtualKey
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

TOKEN = "scim-token-from-the-idp-0123456789"
HAIKU, SONNET = "claude-haiku-4-5-20251001", "claude-sonnet-4-6"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PROFILES: list[dict[str, Any]] = [
    {
        "id": "developers",
        "groups": ["Engineering", "Engineering-EU"],
        "provider_configs": [{"provider": "anthropic", "allowed_models": [HAIKU]}],
    },
    {
        "id": "staff",
        "groups": ["11111111-2222-3333-4444-555555555555"],  # Entra: the group's object id
        "priority": 10,
        "provider_configs": [{"provider": "anthropic", "allowed_models": [HAIKU, SONNET]}],
    },
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    with FakeUpstreamThread() as upstream:
        config: dict[str, Any] = {
            "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-x"}]}},
            "access_profiles": PROFILES,
            "auth": {"scim": {"token_sha256": [hashlib.sha256(TOKEN.encode()).hexdigest()]}},
            "audit": {"hmac_key": "scim-audit-key-0123456789"},
        }
        with GatewayThread(config, tmp_path_factory.mktemp("scim")) as gateway:
            yield gateway


@pytest.fixture
def scim(gw: GatewayThread) -> Iterator[httpx2.Client]:
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/scim+json"}
    with httpx2.Client(base_url=gw.base_url + "/scim/v2", headers=headers, timeout=20) as client:
        yield client


def ask(gw: GatewayThread, key: str, model: str = HAIKU) -> Any:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    return client.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": "hi"}])


def key_of(gw: GatewayThread, user_id: str) -> tuple[VirtualKey, str]:
    """The user's key and a secret for it, as their first sign-in would reveal it."""
    directory = gw.services.identity.directory
    [key] = gw.call(directory.keys_of(user_id))
    return key, gw.call(directory.new_secret(key, "test"))


def test_okta_sequence(gw: GatewayThread, scim: httpx2.Client) -> None:
    # Okta's "Test connector configuration", then its lookup before creating.
    probe = scim.get("/Users", params={"startIndex": 1, "count": 2})
    assert probe.status_code == 200 and probe.json()["schemas"] == [
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    ]
    found = scim.get("/Users", params={"filter": 'userName eq "dana@example.com"', "startIndex": 1, "count": 100})
    assert found.json()["totalResults"] == 0 and found.json()["Resources"] == []
    group = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Engineering", "members": []})
    assert group.status_code == 201
    gid = group.json()["id"]
    created = scim.post(
        "/Users",
        json={
            "schemas": [USER],
            "userName": "dana@example.com",
            "name": {"givenName": "Dana", "familyName": "Dev"},
            "emails": [{"primary": True, "value": "dana@example.com", "type": "work"}],
            "displayName": "Dana Dev",
            "locale": "en-US",
            "externalId": "00u1abcdEFGH",
            "groups": [],
            "password": "never-stored-1!",
            "active": True,
        },
    )
    assert created.status_code == 201 and created.headers["content-type"].startswith("application/scim+json")
    uid = created.json()["id"]
    assert "password" not in created.json() and created.json()["meta"]["resourceType"] == "User"
    assert gw.call(gw.services.identity.directory.keys_of(uid)) == []  # no group yet: no profile, no key
    again = scim.post("/Users", json={"schemas": [USER], "userName": "DANA@example.com"})
    assert again.status_code == 409 and again.json()["scimType"] == "uniqueness"
    # Okta pushes the group membership.
    add = {"op": "add", "path": "members", "value": [{"value": uid, "display": "dana@example.com"}]}
    assert scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [add]}).status_code == 200
    key, secret = key_of(gw, uid)
    assert key.profile_id == "developers"
    assert ask(gw, secret).content[0].text.startswith("echo")
    # A profile update by PUT (Okta's AIW integrations), then the filters Okta uses.
    put = scim.put(f"/Users/{uid}", json={**created.json(), "displayName": "Dana D."})
    assert put.status_code == 200 and put.json()["displayName"] == "Dana D."
    by_external = scim.get("/Users", params={"filter": 'externalId eq "00u1abcdEFGH"'}).json()
    assert [u["id"] for u in by_external["Resources"]] == [uid]
    assert scim.get("/Groups", params={"filter": 'displayName eq "Engineering"'}).json()["totalResults"] == 1
    # Deprovisioning: Okta deactivates with a path-less replace.
    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    done = scim.patch(f"/Users/{uid}", json=deactivate)
    assert done.status_code == 200 and done.json()["active"] is False
    with pytest.raises(anthropic.PermissionDeniedError, match="revoked"):
        ask(gw, secret)
    # The MCP gateway authenticates through the same key cache: refused there too.
    refused = gw.call(gw.services.mcp.authenticate({"authorization": f"Bearer {secret}"}))
    assert isinstance(refused, SluiceError) and refused.kind is ErrorKind.POLICY_KEY_INACTIVE
    # Okta removes the membership with a filtered path.
    remove = {"op": "remove", "path": f'members[value eq "{uid}"]'}
    members = scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [remove]}).json()["members"]
    assert members == []


def test_entra_sequence(gw: GatewayThread, scim: httpx2.Client) -> None:
    assert scim.get("/Users", params={"filter": 'userName eq "ed@contoso.com"'}).json()["totalResults"] == 0
    created = scim.post(
        "/Users",
        json={
            "schemas": [USER, ENTERPRISE],
            "externalId": "ed",
            "userName": "ed@contoso.com",
            "active": True,
            "displayName": "Ed Engineer",
            "emails": [{"primary": True, "type": "work", "value": "ed@contoso.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Ed Engineer", "familyName": "Engineer", "givenName": "Ed"},
            "roles": [],
            ENTERPRISE: {"department": "Platform"},
        },
    )
    assert created.status_code == 201
    uid = created.json()["id"]
    lookup = scim.get("/Groups", params={"excludedAttributes": "members", "filter": 'displayName eq "Staff"'})
    assert lookup.json()["totalResults"] == 0
    group = scim.post(
        "/Groups",
        json={"schemas": [GROUP], "externalId": "11111111-2222-3333-4444-555555555555", "displayName": "Staff"},
    )
    gid = group.json()["id"]
    add = {"op": "Add", "path": "members", "value": [{"value": uid}]}
    assert scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [add]}).status_code == 200
    listed = scim.get("/Groups", params={"excludedAttributes": "members", "filter": 'displayName eq "Staff"'})
    assert "members" not in listed.json()["Resources"][0]
    key, secret = key_of(gw, uid)
    assert key.profile_id == "staff"
    assert ask(gw, secret, SONNET).content[0].text.startswith("echo")
    # Entra's attribute updates: capitalised ops, filtered and extension paths.
    ops = [
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "ed.e@contoso.com"},
        {"op": "Replace", "path": "name.familyName", "value": "Engineer-Smith"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "R&D"},
    ]
    patched = scim.patch(f"/Users/{uid}", json={"schemas": [PATCH], "Operations": ops}).json()
    assert patched["emails"] == [{"primary": True, "type": "work", "value": "ed.e@contoso.com"}]
    assert patched["name"]["familyName"] == "Engineer-Smith" and patched[ENTERPRISE]["department"] == "R&D"
    # Leaving the group: no profile any more, so the key may do nothing.
    remove = {"op": "Remove", "path": "members", "value": [{"value": uid}]}
    assert scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [remove]}).status_code == 200
    with pytest.raises(anthropic.PermissionDeniedError, match="not allowed"):
        ask(gw, secret, HAIKU)
    # Entra's soft delete (a string boolean), then the hard delete.
    off = {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
    assert scim.patch(f"/Users/{uid}", json=off).json()["active"] is False
    with pytest.raises(anthropic.PermissionDeniedError, match="revoked"):
        ask(gw, secret)
    assert scim.delete(f"/Users/{uid}").status_code == 204
    gone = scim.get(f"/Users/{uid}")
    assert gone.status_code == 404 and gone.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_deleting_an_active_user_revokes_their_key_at_once(gw: GatewayThread, scim: httpx2.Client) -> None:
    uid = scim.post("/Users", json={"schemas": [USER], "userName": "fay@example.com"}).json()["id"]
    members = [{"value": uid}]
    # A group matched to its profile by external id (Entra's object id) rather than by name.
    scim.post(
        "/Groups",
        json={"displayName": "Staff (EU)", "externalId": "11111111-2222-3333-4444-555555555555", "members": members},
    )
    _, secret = key_of(gw, uid)
    assert ask(gw, secret).content[0].text.startswith("echo")
    assert scim.delete(f"/Users/{uid}").status_code == 204
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(gw, secret)


def test_pagination_errors_and_discovery(gw: GatewayThread, scim: httpx2.Client) -> None:
    for n in range(5):
        scim.post("/Users", json={"schemas": [USER], "userName": f"page{n}@example.com"})
    page = scim.get("/Users", params={"filter": 'userName sw "page"', "startIndex": 2, "count": 2}).json()
    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [u["userName"] for u in page["Resources"]] == ["page1@example.com", "page2@example.com"]
    bad = scim.get("/Users", params={"filter": "userName regex x"})
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidFilter"
    refused = httpx2.get(gw.base_url + "/scim/v2/Users", headers={"authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["status"] == "401"
    assert scim.get("/ServiceProviderConfig").json()["patch"] == {"supported": True}
    assert [r["id"] for r in scim.get("/ResourceTypes").json()["Resources"]] == ["User", "Group"]
    assert scim.get(f"/Schemas/{USER}").json()["name"] == "User"


def test_editing_a_profile_changes_every_key_derived_from_it(gw: GatewayThread, scim: httpx2.Client) -> None:
    group = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Interns"}).json()
    uids = [scim.post("/Users", json={"schemas": [USER], "userName": f"intern{n}@x.io"}).json()["id"] for n in range(2)]
    interns = {
        "id": "interns",
        "groups": ["Interns"],
        "provider_configs": [{"provider": "anthropic", "allowed_models": [HAIKU]}],
    }
    store = gw.services.store
    gw.call(store.put_object(ConfigObject("access_profile", "interns", interns, "api"), "admin"))
    gw.call(gw.services.profiles.reload())
    members = [{"value": u} for u in uids]
    scim.patch(
        f"/Groups/{group['id']}",
        json={"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": members}]},
    )
    secrets = [key_of(gw, u)[1] for u in uids]
    for secret in secrets:
        assert ask(gw, secret).content[0].text.startswith("echo")
    # The admin moves the profile to Sonnet and adds a per-key request limit: every derived key follows.
    changed = {
        **interns,
        "provider_configs": [{"provider": "anthropic", "allowed_models": [SONNET]}],
        # A rolling window starts when the rule is first seen (whole seconds), so the request each
        # key made above may or may not fall in it: each key gets one or two more, never none.
        "rate_limits": [{"id": "rpm", "request_max_limit": 2, "request_reset_duration": "1h"}],
    }
    gw.call(store.put_object(ConfigObject("access_profile", "interns", changed, "api"), "admin"))
    gw.call(gw.services.profiles.reload())
    gw.call(gw.services.limits.reload())
    for secret in secrets:
        with pytest.raises(anthropic.PermissionDeniedError, match="not allowed"):
            ask(gw, secret, HAIKU)
        served = 0
        with pytest.raises(anthropic.RateLimitError, match="interns/rpm"):
            for _ in range(3):
                assert ask(gw, secret, SONNET).content[0].text.startswith("echo")
                served += 1
        assert served >= 1  # each key has its own counter: the first key's calls left the second's alone


def test_provisioning_is_in_the_audit_log(gw: GatewayThread, scim: httpx2.Client) -> None:
    uid = scim.post("/Users", json={"schemas": [USER], "userName": "audited@example.com"}).json()["id"]
    scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Engineering-EU", "members": [{"value": uid}]})
    scim.patch(
        f"/Users/{uid}", json={"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    )
    httpx2.get(gw.base_url + "/scim/v2/Users", headers={"authorization": "Bearer wrong"})

    async def records() -> list[tuple[str, str, dict[str, Any]]]:
        await gw.services.audit.drain()
        return [(r.kind, r.actor, r.data) async for r in gw.services.store.audit_records()]

    found = gw.call(records())
    mine = [(kind, data) for kind, _, data in found if data.get("id") == uid or data.get("user") == uid]
    assert [k for k, _ in mine if k == "config_change"] and ("key_revoked" in {k for k, _ in mine})
    # Counted per (surface, address, reason) and interval: the first of them is written at once.
    assert any(kind == "auth_failure" and data["surface"] == "scim" and data["count"] >= 1 for kind, _, data in found)
