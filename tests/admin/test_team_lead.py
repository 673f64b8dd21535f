"""A team lead manages the keys and key budgets of their own team, within the team's cap, and
can neither raise another team's budget nor their own team's cap."""

from __future__ import annotations

from typing import Any

from sluice.app import Services
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
