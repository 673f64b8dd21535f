"""A team lead manages the keys and key budgets of their own team, within the team's cap, and
can neither raise another team's budget nor their own team's cap."""

from __future__ import annotations

from typing import Any

from sluice.app import Services
from sluice.auth.directory import GROUP, USER
from tests.admin.conftest import Client, as_role

LEAD = as_role("team-lead", "team-a")


def budget(budget_id: str, limit: float, **scope: Any) -> dict[str, Any]:
    return {"id": budget_id, "max_limit": limit, "reset_duration": "1d", **scope}


async def setup(c: Client) -> None:
    for key_id, team in (("vk-a", "team-a"), ("vk-b", "team-b")):
        assert (await c.post("/api/keys", json={"id": key_id, "team_id": team})).status == 201
    assert (await c.post("/api/budgets", json=budget("cap-a", 50, team_id="team-a"))).status == 201
    assert (await c.post("/api/budgets", json=budget("cap-b", 20, team_id="team-b"))).status == 201
    assert (await c.post("/api/budgets", json=budget("key-b", 5, virtual_key_id="vk-b"))).status == 201


async def test_key_budgets_within_the_cap(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await setup(c)
    assert (await c.post("/api/budgets", json=budget("key-a", 30, virtual_key_id="vk-a"), token=LEAD)).status == 201
    assert (
        await c.put("/api/budgets/key-a", json=budget("key-a", 50, virtual_key_id="vk-a"), token=LEAD)
    ).status == 200
    r = await c.put("/api/budgets/key-a", json=budget("key-a", 50.01, virtual_key_id="vk-a"), token=LEAD)
    assert r.status == 403 and "cap" in r.json()["error"]["message"]
    # The limit the gateway enforces is the one the lead set.
    rules = services.limits.rules_for(await services.store.key_by_id("vk-a"))  # type: ignore[arg-type]
    assert {r.id: r.limit for r in rules}["key-a"] == 50 * 10**12
    assert (await c.delete("/api/budgets/key-a", token=LEAD)).status == 204


async def test_cannot_touch_another_team(admin: tuple[Services, Client]) -> None:
    _, c = admin
    await setup(c)
    assert (await c.put("/api/budgets/key-b", json=budget("key-b", 1, virtual_key_id="vk-b"), token=LEAD)).status == 403
    assert (await c.put("/api/budgets/cap-b", json=budget("cap-b", 99, team_id="team-b"), token=LEAD)).status == 403
    assert (await c.delete("/api/budgets/key-b", token=LEAD)).status == 403
    assert (await c.post("/api/keys", json={"id": "vk-new", "team_id": "team-b"}, token=LEAD)).status == 403
    assert (await c.post("/api/keys/vk-b/revoke", token=LEAD)).status == 403
    # Nor take another team's key by moving it, nor give theirs away.
    assert (await c.patch("/api/keys/vk-b", json={"team_id": "team-a"}, token=LEAD)).status == 403
    assert (await c.patch("/api/keys/vk-a", json={"team_id": "team-b"}, token=LEAD)).status == 403
    # Listings show only their team's.
    keys = (await c.get("/api/keys", token=LEAD)).json()["items"]
    assert [k["id"] for k in keys] == ["vk-a"]
    budgets = (await c.get("/api/budgets", token=LEAD)).json()["items"]
    assert [b["id"] for b in budgets] == ["cap-a"]


async def test_cannot_raise_their_own_cap(admin: tuple[Services, Client]) -> None:
    _, c = admin
    await setup(c)
    r = await c.put("/api/budgets/cap-a", json=budget("cap-a", 500, team_id="team-a"), token=LEAD)
    assert r.status == 403 and "caps.write" in r.json()["error"]["message"]
    assert (await c.post("/api/budgets", json=budget("cap-a2", 500, team_id="team-a"), token=LEAD)).status == 403
    assert (await c.delete("/api/budgets/cap-a", token=LEAD)).status == 403
    # Nor by re-attaching one of their key budgets to the team.
    await c.post("/api/budgets", json=budget("key-a", 1, virtual_key_id="vk-a"), token=LEAD)
    assert (await c.put("/api/budgets/key-a", json=budget("key-a", 1, team_id="team-a"), token=LEAD)).status == 403


async def test_lead_manages_own_team_keys(admin: tuple[Services, Client]) -> None:
    _, c = admin
    await setup(c)
    r = await c.post("/api/keys", json={"id": "vk-a2", "team_id": "team-a"}, token=LEAD)
    assert r.status == 201
    assert (await c.post("/api/keys/vk-a2/rotate", json={"overlap_seconds": 60}, token=LEAD)).status == 200
    assert (await c.post("/api/keys/vk-a2/revoke", token=LEAD)).status == 200
    # A key with no team is not theirs.
    assert (await c.post("/api/keys", json={"id": "vk-loose"}, token=LEAD)).status == 403


# -- a team lead stays inside the team -----------------------------------------------------------------
LEAD_ANN = as_role("team-lead", "team-a", "u-ann")


async def team_with_profile(services: Services, c: Client) -> None:
    """team-a (customer cust-a, MCP tool srv/read) whose profile allows fake/echo; u-ann and
    u-lead are members (their group maps to it), u-bob is in team-b's profile."""
    assert (await c.post("/api/customers", json={"id": "cust-a"})).status == 201
    assert (await c.post("/api/customers", json={"id": "cust-b"})).status == 201
    team_a = {"id": "team-a", "customer_id": "cust-a", "mcp": {"tools": ["srv/read"]}}
    assert (await c.post("/api/teams", json=team_a)).status == 201
    assert (await c.post("/api/teams", json={"id": "team-b", "customer_id": "cust-b"})).status == 201
    profiles = [
        {
            "id": "devs-a",
            "groups": ["devs-a"],
            "team_id": "team-a",
            "provider_configs": [{"provider": "fake", "allowed_models": ["echo"]}],
        },
        {"id": "devs-b", "groups": ["devs-b"], "team_id": "team-b", "provider_configs": [{"provider": "fake"}]},
    ]
    for profile in profiles:
        assert (await c.post("/api/access-profiles", json=profile)).status == 201
    directory = services.identity.directory
    for uid in ("u-ann", "u-bob"):
        await directory.put(USER, uid, {"userName": f"{uid}@example.com", "active": True}, "scim")
    await directory.put(GROUP, "g-a", {"displayName": "devs-a", "members": [{"value": "u-ann"}]}, "scim")
    await directory.put(GROUP, "g-b", {"displayName": "devs-b", "members": [{"value": "u-bob"}]}, "scim")
    await services.profiles.reload()


async def test_a_lead_keeps_the_teams_customer(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await team_with_profile(services, c)
    made = await c.post("/api/keys", json={"id": "vk-1", "team_id": "team-a"}, token=LEAD_ANN)
    assert made.status == 201 and made.json()["key"]["customer_id"] == "cust-a"  # filled in
    other = await c.post("/api/keys", json={"id": "vk-2", "team_id": "team-a", "customer_id": "cust-b"}, token=LEAD)
    assert other.status == 403 and "cust-a" in other.json()["error"]["message"]
    assert (await c.patch("/api/keys/vk-1", json={"customer_id": "cust-b"}, token=LEAD)).status == 403
    assert (await c.patch("/api/keys/vk-1", json={"customer_id": None}, token=LEAD)).status == 403
    # An admin is not bound by it.
    assert (await c.patch("/api/keys/vk-1", json={"customer_id": "cust-b"})).status == 200


async def test_a_lead_attaches_keys_only_to_people_of_the_team(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await team_with_profile(services, c)
    ok = await c.post("/api/keys", json={"id": "vk-ann", "team_id": "team-a", "user_id": "u-ann"}, token=LEAD)
    assert ok.status == 201
    bob = await c.post("/api/keys", json={"id": "vk-bob", "team_id": "team-a", "user_id": "u-bob"}, token=LEAD)
    assert bob.status == 403 and "u-bob" in bob.json()["error"]["message"]
    assert (await c.patch("/api/keys/vk-ann", json={"user_id": "u-bob"}, token=LEAD)).status == 403
    assert (await c.patch("/api/keys/vk-ann", json={"user_id": "u-nobody"}, token=LEAD)).status == 403


async def test_a_lead_grants_nothing_beyond_the_team(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await team_with_profile(services, c)

    async def create(key_id: str, **fields: Any) -> int:
        return (await c.post("/api/keys", json={"id": key_id, "team_id": "team-a", **fields}, token=LEAD)).status

    assert await create("vk-echo", grants=[{"provider": "fake", "allowed_models": ["echo"]}]) == 201
    assert await create("vk-all", grants=[{"provider": "fake"}]) == 403  # every model of fake
    assert await create("vk-star", grants=[{"provider": "fake", "allowed_models": ["*"]}]) == 403
    assert await create("vk-slow", grants=[{"provider": "fake", "allowed_models": ["slow"]}]) == 403
    assert await create("vk-other", grants=[{"provider": "openai", "allowed_models": ["echo"]}]) == 403
    assert await create("vk-read", mcp_tools=["srv/read"]) == 201
    assert await create("vk-write", mcp_tools=["srv/write"]) == 403
    assert await create("vk-srv", mcp_tools=["srv/*"]) == 403
    assert await create("vk-group", mcp_tool_groups=["admins"]) == 403
    assert await create("vk-prof", profile_id="devs-a") == 201
    assert await create("vk-prof-b", profile_id="devs-b") == 403  # team-b's profile grants every model
    widen = {"grants": [{"provider": "fake"}]}
    assert (await c.patch("/api/keys/vk-echo", json=widen, token=LEAD)).status == 403
    assert (await c.patch("/api/keys/vk-echo", json={"profile_id": "devs-b"}, token=LEAD)).status == 403
    assert (await c.patch("/api/keys/vk-echo", json={"name": "renamed"}, token=LEAD)).status == 200
    # What the lead made works within the team's models only.
    made = await c.post("/api/keys/vk-echo/rotate", json={"overlap_seconds": 0}, token=LEAD)
    secret = made.json()["secret"]
    chat = {"model": "fake/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    assert (await c.post("/v1/chat/completions", json=chat, token=secret)).status == 200
