"""Virtual keys through the admin API: the secret once, never a hash, rotation with an overlap,
revocation and expiry applied on the next request, every change an event with its actor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sluice.app import Services
from sluice.core.errors import SluiceError
from tests.admin.conftest import Client, as_role


async def test_create_shows_the_secret_once_and_never_a_hash(admin: tuple[Services, Client]) -> None:
    services, c = admin
    r = await c.post(
        "/api/keys", json={"id": "vk-a", "name": "Alice", "team_id": "t1", "grants": [{"provider": "fake"}]}
    )
    assert r.status == 201
    secret = r.json()["secret"]
    assert secret.startswith("sk-sluice-")
    key = await services.keys.authenticate(secret)  # usable on the next request
    assert key.id == "vk-a"
    stored = await services.store.key_by_id("vk-a")
    assert stored is not None
    for reply in (await c.get("/api/keys"), await c.get("/api/keys/vk-a"), await c.get("/api/config/events")):
        assert reply.status == 200
        assert secret.encode() not in reply.body
        assert stored.key_hash.encode() not in reply.body
        assert b"key_hash" not in reply.body
    assert (await c.post("/api/keys", json={"id": "vk-a"})).status == 409


async def test_rotate_with_overlap_then_revoke(admin: tuple[Services, Client]) -> None:
    services, c = admin
    old = (await c.post("/api/keys", json={"id": "vk-r"})).json()["secret"]
    r = await c.post("/api/keys/vk-r/rotate", json={"overlap_seconds": 600})
    assert r.status == 200
    new = r.json()["secret"]
    assert new != old and r.json()["key"]["previous_secret_valid_until"] is not None
    assert (await services.keys.authenticate(new)).id == "vk-r"
    assert (await services.keys.authenticate(old)).id == "vk-r"  # inside the overlap
    # Without an overlap the old secret stops at once.
    newer = (await c.post("/api/keys/vk-r/rotate", json={"overlap_seconds": 0})).json()["secret"]
    for gone in (old, new):
        with pytest.raises(SluiceError):
            await services.keys.authenticate(gone)
    r = await c.post("/api/keys/vk-r/revoke")
    assert r.status == 200 and r.json()["status"] == "revoked"
    with pytest.raises(SluiceError, match="revoked"):
        await services.keys.authenticate(newer)
    assert (await c.post("/api/keys/vk-r/revoke")).status == 409
    assert (await c.post("/api/keys/vk-r/rotate", json={})).status == 409


async def test_expire_and_update(admin: tuple[Services, Client]) -> None:
    services, c = admin
    secret = (await c.post("/api/keys", json={"id": "vk-e"})).json()["secret"]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = await c.post("/api/keys/vk-e/expire", json={"at": later})
    assert r.status == 200 and r.json()["status"] == "active"
    r = await c.post("/api/keys/vk-e/expire", json={})
    assert r.status == 200 and r.json()["status"] == "expired"
    with pytest.raises(SluiceError, match="expired"):
        await services.keys.authenticate(secret)
    r = await c.patch(
        "/api/keys/vk-e", json={"expires_at": None, "description": "back", "grants": [{"provider": "fake"}]}
    )
    assert r.status == 200 and r.json()["status"] == "active" and r.json()["grants"][0]["provider"] == "fake"
    assert (await services.keys.authenticate(secret)).description == "back"
    r = await c.patch("/api/keys/vk-e", json={"expires_at": "2030-01-01T00:00:00"})  # no offset
    assert r.status == 422 and r.json()["error"]["details"][0]["loc"] == ["body", "expires_at"]
    assert (await c.patch("/api/keys/nope", json={})).status == 404


async def test_every_change_is_an_event_and_an_audit_record(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await c.post("/api/keys", json={"id": "vk-ev", "team_id": "t1"}, token=as_role("team-lead", "t1"))
    await c.post("/api/keys/vk-ev/rotate", json={}, token=as_role("team-lead", "t1"))
    await c.post("/api/keys/vk-ev/revoke")
    events = (await c.get("/api/config/events", query={"kind": "virtual_key"})).json()["items"]
    assert [(e["action"], e["actor"]) for e in events] == [
        ("revoke", "bootstrap:bootstrap"),
        ("rotate", "oidc:team-lead@example.test"),
        ("create", "oidc:team-lead@example.test"),
    ]
    records = [r async for r in services.store.audit_records()]
    changes = [r for r in records if r.kind == "config_change" and r.data["object"] == "virtual_key"]
    assert [r.data["action"] for r in changes] == ["create", "rotate", "revoke"]
    # Reading the events was itself recorded.
    assert any(r.kind == "data_access" and r.data["action"] == "config_events_query" for r in records)


async def test_developer_sees_and_rotates_only_their_own_key(admin: tuple[Services, Client]) -> None:
    _, c = admin
    await c.post("/api/keys", json={"id": "vk-dev", "user_id": "u-dev"})
    await c.post("/api/keys", json={"id": "vk-other", "user_id": "u-other"})
    dev = as_role("developer", "", "u-dev")
    assert [k["id"] for k in (await c.get("/api/keys", token=dev)).json()["items"]] == ["vk-dev"]
    assert (await c.post("/api/keys/vk-dev/rotate", json={}, token=dev)).status == 200
    assert (await c.post("/api/keys/vk-other/rotate", json={}, token=dev)).status == 403
    assert (await c.post("/api/keys/vk-dev/revoke", token=dev)).status == 403
    assert (await c.get("/api/keys/vk-other", token=dev)).status == 403


async def test_authentication(admin: tuple[Services, Client]) -> None:
    _, c = admin
    r = await c.get("/api/keys", token=None)
    assert r.status == 401 and r.headers["www-authenticate"] == "Bearer"
    assert (await c.get("/api/keys", token="wrong")).status == 401
    assert (await c.get("/api/keys", token="sk-sluice-admin-forged")).status == 401
    r = await c.post("/api/tokens", json={"id": "ci", "roles": ["viewer"]})
    assert r.status == 201
    token = r.json()["secret"]
    assert (await c.get("/api/keys", token=token)).status == 200
    assert (await c.post("/api/keys", json={"id": "x"}, token=token)).status == 403
    listed = await c.get("/api/tokens")
    assert token.encode() not in listed.body and b"token_hash" not in listed.body
    assert (await c.delete("/api/tokens/ci")).status == 204
    assert (await c.get("/api/keys", token=token)).status == 401  # revoked at once
