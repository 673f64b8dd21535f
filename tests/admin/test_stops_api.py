"""/api/stops: who may stop and resume what, what is recorded, and what a stopped caller sees."""

from __future__ import annotations

from pathlib import Path

from sluice.app import Services
from tests.admin.conftest import Client, admin_config, as_role, start

MESSAGE = {"model": "echo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


async def _key(c: Client, key_id: str, team: str | None) -> str:
    made = await c.post("/api/keys", json={"id": key_id, "team_id": team, "grants": [{"provider": "fake"}]})
    assert made.status == 201, made.body
    return str(made.json()["secret"])


async def _ask(c: Client, secret: str, session: str | None = None) -> int:
    headers = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    if session:
        headers["x-claude-code-session-id"] = session
    reply = await c.post("/v1/messages", json=MESSAGE, token=None, headers=headers)
    return reply.status


async def test_stop_refuses_in_the_surfaces_format_is_audited_and_resume_undoes_it(
    admin: tuple[Services, Client],
) -> None:
    services, c = admin
    secret = await _key(c, "vk-a", "team-a")
    assert await _ask(c, secret) == 200
    made = await c.post("/api/stops", json={"scope": "key", "target": "vk-a", "reason": "leaked on a laptop"})
    assert made.status == 201 and made.json()["scope"] == "key" and made.json()["actor"]
    reply = await c.post("/v1/messages", json=MESSAGE, token=None, headers={"x-api-key": secret})
    assert reply.status == 403
    error = reply.json()["error"]
    assert error["type"] == "permission_error" and "leaked on a laptop" in error["message"]
    listed = (await c.get("/api/stops")).json()["items"]
    assert [s["target"] for s in listed] == ["vk-a"]
    resumed = await c.post("/api/stops/resume", json={"scope": "key", "target": "vk-a", "reason": "rotated"})
    assert resumed.status == 200 and resumed.json()["items"][0]["lifted_by"]
    assert await _ask(c, secret) == 200
    assert (await c.get("/api/stops")).json()["items"] == []
    history = (await c.get("/api/stops", query={"all": "true"})).json()["items"]
    assert history[0]["lift_reason"] == "rotated"
    kinds = [r.kind async for r in services.store.audit_records()]
    assert "stop" in kinds and "resume" in kinds


async def test_a_team_lead_stops_their_teams_keys_only_and_never_the_organisation(
    admin: tuple[Services, Client],
) -> None:
    _, c = admin
    await _key(c, "vk-a", "team-a")
    await _key(c, "vk-b", "team-b")
    lead = as_role("team-lead", "team-a")
    assert (
        await c.post("/api/stops", json={"scope": "key", "target": "vk-a", "reason": "r"}, token=lead)
    ).status == 201
    assert (
        await c.post("/api/stops", json={"scope": "key", "target": "vk-b", "reason": "r"}, token=lead)
    ).status == 403
    assert (await c.post("/api/stops", json={"scope": "org", "reason": "r"}, token=lead)).status == 403
    # A session named without its key could be anyone's: only an admin stops that.
    assert (
        await c.post("/api/stops", json={"scope": "session", "target": "s", "reason": "r"}, token=lead)
    ).status == 403
    body = {"scope": "session", "target": "s", "key_id": "vk-a", "reason": "r"}
    assert (await c.post("/api/stops", json=body, token=lead)).status == 201
    # Nor may a lead lift an organisation-wide stop an admin threw.
    assert (await c.post("/api/stops", json={"scope": "org", "reason": "breach"})).status == 201
    assert (await c.post("/api/stops/resume", json={"scope": "org", "reason": "r"}, token=lead)).status == 403


async def test_invalid_stops_are_422(admin: tuple[Services, Client]) -> None:
    _, c = admin
    for body in (
        {"scope": "session", "target": "   ", "reason": "r"},
        {"scope": "planet", "target": "x", "reason": "r"},
        {"scope": "team", "target": "t"},  # no reason
        {"scope": "team", "target": "t", "reason": ""},
    ):
        assert (await c.post("/api/stops", json=body)).status == 422, body
    assert (await c.post("/api/stops", json={"scope": "key", "target": "vk-missing", "reason": "r"})).status == 404


async def test_a_stopped_keys_mcp_calls_are_refused_too(tmp_path: Path) -> None:
    config = admin_config(tmp_path)
    # A server that never answers: /mcp authenticates (and checks the stops) before it needs one.
    config["mcp"] = {"servers": [{"name": "srv", "transport": "http", "url": "http://127.0.0.1:9/mcp"}]}
    services, c = await start(config)
    try:
        secret = await _key(c, "vk-mcp", None)
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        before = await c.post("/mcp", json=ping, token=secret)
        assert before.status != 403
        await c.post("/api/stops", json={"scope": "key", "target": "vk-mcp", "reason": "tool abuse"})
        after = await c.post("/mcp", json=ping, token=secret)
        assert after.status == 403 and "tool abuse" in after.json()["error"]
    finally:
        await services.stop()


async def test_a_team_lead_sees_and_lifts_only_their_teams_stops(admin: tuple[Services, Client]) -> None:
    # Hostile: a lead of team-a names team-b's key, team-b's session (with its key), or no key.
    _, c = admin
    await _key(c, "vk-a", "team-a")
    await _key(c, "vk-b", "team-b")
    lead = as_role("team-lead", "team-a")
    for body in (
        {"scope": "key", "target": "vk-b", "reason": "admin's"},
        {"scope": "session", "target": "s-b", "key_id": "vk-b", "reason": "admin's"},
        {"scope": "session", "target": "s-any", "reason": "admin's"},
        {"scope": "team", "target": "team-b", "reason": "admin's"},
        {"scope": "team", "target": "team-a", "reason": "admin's"},
        {"scope": "org", "reason": "breach"},
    ):
        assert (await c.post("/api/stops", json=body)).status == 201
    mine = {"scope": "session", "target": "s-a", "key_id": "vk-a", "reason": "lead's"}
    assert (await c.post("/api/stops", json=mine, token=lead)).status == 201
    listed = (await c.get("/api/stops", token=lead)).json()["items"]
    assert sorted((s["scope"], s["target"]) for s in listed) == [("org", ""), ("session", "s-a"), ("team", "team-a")]
    everything = (await c.get("/api/stops", query={"all": "true"}, token=lead)).json()["items"]
    assert {s["target"] for s in everything} == {"", "s-a", "team-a"}
    for body in (
        {"scope": "session", "target": "s-b", "key_id": "vk-b", "reason": "r"},
        {"scope": "key", "target": "vk-b", "reason": "r"},
        {"scope": "team", "target": "team-b", "reason": "r"},
        {"scope": "session", "target": "s-any", "reason": "r"},
    ):
        assert (await c.post("/api/stops/resume", json=body, token=lead)).status == 403, body
    assert len((await c.get("/api/stops")).json()["items"]) == 7  # nothing of theirs was lifted
    lifted = await c.post("/api/stops/resume", json={**mine, "reason": "fixed"}, token=lead)
    assert lifted.status == 200 and [s["target"] for s in lifted.json()["items"]] == ["s-a"]
    developer = as_role("developer", "team-a", "u-me")
    assert (await c.get("/api/stops", token=developer)).status == 403
