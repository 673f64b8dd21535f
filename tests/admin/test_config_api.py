"""Configuration objects through the admin API: applied on the next request (providers, routing,
tool groups, budgets), secrets write-only and never stored in plain, precise errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sluice.app import Services
from sluice.providers.http_provider import HttpProvider
from sluice.storage.records import VirtualKey
from tests.admin.conftest import Client, admin_config, start

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def test_alias_and_rule_apply_on_the_next_request(admin: tuple[Services, Client]) -> None:
    _, c = admin
    secret = (await c.post("/api/keys", json={"id": "vk", "grants": [{"provider": "fake"}]})).json()["secret"]
    r = await c.post("/v1/chat/completions", json={**CHAT, "model": "quick"}, token=secret)
    assert r.json()["model"] == "quick"  # the fake provider answers any name as itself
    assert (await c.post("/api/aliases", json={"alias": "quick", "target": "fake/echo"})).status == 201
    r = await c.post("/v1/chat/completions", json={**CHAT, "model": "quick"}, token=secret)
    assert r.status == 200, r.body
    assert r.json()["model"] == "echo"  # the provider prefix is routing, not the model
    rule = {"id": "r1", "models": ["quick"], "when": "request.stream == false", "target": "fake/echo-2"}
    assert (await c.post("/api/routing-rules", json=rule)).status == 201
    r = await c.post("/v1/chat/completions", json={**CHAT, "model": "quick"}, token=secret)
    assert r.json()["model"] == "echo-2"
    assert (await c.delete("/api/routing-rules/r1")).status == 204
    assert (await c.delete("/api/aliases/quick")).status == 204
    r = await c.post("/v1/chat/completions", json={**CHAT, "model": "quick"}, token=secret)
    assert r.json()["model"] == "quick"


async def test_provider_keys_are_write_only_and_sealed(
    admin: tuple[Services, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, c = admin
    plain = "sk-upstream-PLAIN-0123456789"
    assert (
        await c.put("/api/providers/openai", json={"name": "openai", "base_url": "http://127.0.0.1:9/v1"})
    ).status == 200
    body = {"provider": "openai", "name": "main", "value": plain}
    r = await c.post("/api/provider-keys", json=body)
    assert r.status == 422 and "SLUICE_SECRETS_KEY" in r.json()["error"]["message"]  # never stored in plain
    monkeypatch.setenv("SLUICE_SECRETS_KEY", "a passphrase for tests")
    r = await c.post("/api/provider-keys", json=body)
    assert r.status == 201 and r.json()["body"]["value"] == "(encrypted)"
    stored = [o for o in await services.store.list_objects() if o.kind == "provider_key"]
    assert stored[0].body["value"].startswith("enc:") and plain not in str(stored[0].body)
    for path in ("/api/provider-keys", "/api/provider-keys/openai:main", "/api/config/events"):
        assert plain.encode() not in (await c.get(path)).body
    provider = services.engine.providers["openai"]
    assert isinstance(provider, HttpProvider) and [k.secret for k in provider.keys] == [plain]  # live
    r = await c.put("/api/provider-keys/openai:env", json={"provider": "openai", "name": "env", "value": "env.MY_KEY"})
    assert r.json()["body"]["value"] == "env.MY_KEY"  # a reference is a name, not a secret
    assert (await c.delete("/api/providers/openai")).status == 409  # still has keys
    r = await c.post("/api/provider-keys", json={**body, "provider": "nobody"})
    assert r.status == 409


async def test_tool_groups_and_budgets_are_live(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await c.post("/api/keys", json={"id": "vk", "mcp_tool_groups": ["readers"], "grants": [{"provider": "fake"}]})
    assert (await c.post("/api/tool-groups", json={"name": "readers", "tools": ["fs/read"]})).status == 201
    key = await services.store.key_by_id("vk")
    assert key is not None and services.mcp.grants(key).tool("fs", "read")
    assert (
        await c.post("/api/budgets", json={"id": "b", "virtual_key_id": "vk", "max_limit": 3, "reset_duration": "1d"})
    ).status == 201
    assert [r.id for r in services.limits.rules_for(key)] == ["b"]
    r = await c.post(
        "/api/mcp-servers", json={"name": "fs", "transport": "stdio", "command": "x", "env": {"T": "env.T"}}
    )
    assert r.status == 201 and r.json()["body"]["env"] == {"T": "env.T"}


async def test_errors_are_precise_json(admin: tuple[Services, Client]) -> None:
    _, c = admin
    r = await c.post("/api/budgets", json={"id": "b", "team_id": "t", "max_limit": -1, "reset_duration": "fortnight"})
    assert r.status == 422
    locs = [d["loc"] for d in r.json()["error"]["details"]]
    assert ["body", "max_limit"] in locs and ["body", "reset_duration"] in locs
    r = await c.put("/api/teams/t1", json={"id": "t2"})
    assert r.status == 409 and "path says 't1'" in r.json()["error"]["message"]
    r = await c.post("/api/teams", raw=b"{not json")
    assert r.status == 422 and r.json()["error"]["details"][0]["loc"] == ["body"]
    r = await c.post("/api/teams", json={"id": "t1", "colour": "red"})
    assert r.status == 422 and r.json()["error"]["details"][0]["loc"] == ["body", "colour"]
    assert (await c.get("/api/teams/nope")).json()["error"]["type"] == "not_found"
    await c.post("/api/teams", json={"id": "t1"})
    r = await c.post("/api/teams", json={"id": "t1"})
    assert r.status == 409 and r.json()["error"]["type"] == "conflict"
    r = await c.get("/api/requests", query={"limit": 0})
    assert r.status == 422 and r.json()["error"]["details"][0]["loc"] == ["query", "limit"]
    r = await c.post("/api/routing-rules", json={"id": "r", "when": "nonsense ==", "target": "x"})
    assert r.status == 422 and r.json()["error"]["details"][0]["loc"][:2] == ["body", "when"]
    assert (await c.request("PATCH", "/api/teams")).status == 405


async def test_another_replica_follows_within_a_second(tmp_path: Path) -> None:
    first, c = await start(admin_config(tmp_path))
    second, _ = await start(admin_config(tmp_path))  # the same store: another replica
    try:
        await c.put("/api/providers/extra", json={"name": "extra", "type": "fake"})
        await c.put("/api/tool-groups/g", json={"name": "g", "tools": ["srv/*"]})
        key = VirtualKey("vk", "vk", "h", "h…", mcp_tool_groups=("g",))
        for _ in range(40):
            if "extra" in second.engine.providers and second.mcp.grants(key).tool("srv", "t"):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the other replica did not rebuild within 2 s")
    finally:
        await second.stop()
        await first.stop()


async def test_a_provider_that_cannot_be_built_is_refused(admin: tuple[Services, Client]) -> None:
    """A stored provider that cannot be built would make every rebuild of the live configuration
    fail (providers, routing, MCP): it is refused with 422 instead."""
    services, c = admin
    for body in ({"name": "bedrock"}, {"name": "gcp", "type": "vertex"}, {"name": "az", "type": "azure"}):
        r = await c.put(f"/api/providers/{body['name']}", json=body)
        assert r.status == 422, (body, r.body)
    assert (await c.post("/api/aliases", json={"alias": "quick", "target": "fake/echo"})).status == 201
    assert [a.alias for a in services.live.config.routing.aliases] == ["quick"]  # the rebuild went through
