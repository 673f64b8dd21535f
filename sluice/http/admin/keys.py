"""/api/keys: virtual keys. Secrets are returned once, at creation and rotation; listings and
reads never show a secret or a hash."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from sluice.admin.keys import KeyAdmin, public_view
from sluice.admin.team_scope import allowance_of, team_overreach
from sluice.auth.rbac import Scope, widest_grant
from sluice.http.admin.framework import ApiError, Call, Endpoint
from sluice.http.admin.schemas import ExpireIn, KeyCreate, KeyList, KeyOut, KeySecret, KeyUpdate, RotateIn
from sluice.storage.records import ProviderGrant, VirtualKey


def scope_of(key: VirtualKey) -> Scope:
    return Scope(team_id=key.team_id, user_id=key.user_id)


def key_out(key: VirtualKey) -> KeyOut:
    return KeyOut.model_validate(public_view(key))


def _admin(call: Call) -> KeyAdmin:
    return KeyAdmin(call.services.admin)


def _grants(items: list[Any]) -> tuple[ProviderGrant, ...]:
    return tuple(ProviderGrant(g.provider, g.weight, tuple(g.allowed_models)) for g in items)


async def within_team(call: Call, key: VirtualKey, changed: set[str]) -> VirtualKey:
    """The key as a team lead may store it: a caller whose only right here is the team grant
    keeps the team's customer (filled in when not given), attaches the key only to people of the
    team, and grants nothing the team may not use (sluice/admin/team_scope.py)."""
    if widest_grant(call.principal, call.action) != "team" or key.team_id is None:
        return key
    objects = await call.services.store.list_objects()
    team = next((o.body for o in objects if o.kind == "team" and o.id == key.team_id), None)
    allowance = allowance_of(key.team_id, team, call.services.profiles.profiles.values())
    if key.customer_id is None and allowance.customer_id is not None and "customer_id" not in changed:
        key = dataclasses.replace(key, customer_id=allowance.customer_id)
    why = await team_overreach(key, changed, allowance, call.services.identity.directory, call.principal.user_id)
    if why is not None:
        raise ApiError(403, "forbidden", f"Not allowed: {why}.")
    return key


async def list_keys(call: Call) -> KeyList:
    grant = widest_grant(call.principal, "keys.read")
    if grant == "none":
        call.authorize(Scope())  # raises with the reason
    keys = await call.services.store.list_keys()
    return KeyList(items=[key_out(k) for k in keys if call.allowed(scope_of(k))])


async def get_key(call: Call) -> KeyOut:
    key = await _admin(call).get(call.path["key_id"])
    call.authorize(scope_of(key))
    return key_out(key)


async def create_key(call: Call) -> KeySecret:
    body: KeyCreate = call.body
    call.authorize(Scope(team_id=body.team_id, user_id=body.user_id))
    key = VirtualKey(
        id=body.id,
        name=body.name or body.id,
        key_hash="",
        key_hint="",
        grants=_grants(body.grants),
        description=body.description,
        team_id=body.team_id,
        customer_id=body.customer_id,
        expires_at=body.expires_at,
        fallbacks=tuple(body.fallbacks),
        mcp_tools=tuple(body.mcp_tools),
        mcp_tool_groups=tuple(body.mcp_tool_groups),
        user_id=body.user_id,
        profile_id=body.profile_id,
    )
    key = await within_team(call, key, {*body.model_fields_set, "team_id"})
    stored, secret = await _admin(call).create(key, call.principal.actor)
    return KeySecret(key=key_out(stored), secret=secret)


async def update_key(call: Call) -> KeyOut:
    admin = _admin(call)
    before = await admin.get(call.path["key_id"])
    call.authorize(scope_of(before))
    body: KeyUpdate = call.body
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name == "grants":
            value = _grants(value)
        elif name in ("fallbacks", "mcp_tools", "mcp_tool_groups"):
            value = tuple(value)
        changes[name] = value
    # Moving a key between teams needs the right on both sides.
    call.authorize(
        Scope(team_id=changes.get("team_id", before.team_id), user_id=changes.get("user_id", before.user_id))
    )
    changed = set(changes)
    proposed = dataclasses.replace(before, **changes)
    if widest_grant(call.principal, call.action) == "team" and "team_id" in changed and "customer_id" not in changed:
        proposed = dataclasses.replace(proposed, customer_id=None)  # a lead's key follows its new team's customer
    after = await within_team(call, proposed, changed)
    if after.customer_id != before.customer_id:
        changes["customer_id"] = after.customer_id
    return key_out(await admin.update(before.id, changes, call.principal.actor))


async def rotate_key(call: Call) -> KeySecret:
    admin = _admin(call)
    key = await admin.get(call.path["key_id"])
    call.authorize(scope_of(key))
    body: RotateIn = call.body
    rotated, secret = await admin.rotate(key.id, timedelta(seconds=body.overlap_seconds), call.principal.actor)
    return KeySecret(key=key_out(rotated), secret=secret)


async def revoke_key(call: Call) -> KeyOut:
    admin = _admin(call)
    key = await admin.get(call.path["key_id"])
    call.authorize(scope_of(key))
    return key_out(await admin.revoke(key.id, call.principal.actor))


async def expire_key(call: Call) -> KeyOut:
    admin = _admin(call)
    key = await admin.get(call.path["key_id"])
    call.authorize(scope_of(key))
    body: ExpireIn = call.body
    return key_out(await admin.expire(key.id, body.at, call.principal.actor))


def key_endpoints() -> list[Endpoint]:
    tag = "virtual keys"
    one = "/api/keys/{key_id}"
    return [
        Endpoint("GET", "/api/keys", "keys.read", list_keys, "List virtual keys", tag, KeyList),
        Endpoint(
            "POST",
            "/api/keys",
            "keys.create",
            create_key,
            "Issue a virtual key",
            tag,
            KeySecret,
            201,
            KeyCreate,
            errors=(409,),
            description="The response carries the secret, once; only its hash is stored.",
        ),
        Endpoint("GET", one, "keys.read", get_key, "Read a virtual key", tag, KeyOut, errors=(404,)),
        Endpoint(
            "PATCH", one, "keys.update", update_key, "Change a virtual key", tag, KeyOut, body=KeyUpdate, errors=(404,)
        ),
        Endpoint(
            "POST",
            one + "/rotate",
            "keys.rotate",
            rotate_key,
            "Rotate a key's secret",
            tag,
            KeySecret,
            body=RotateIn,
            errors=(404, 409),
            description="A new secret (returned once); the old one keeps working for overlap_seconds.",
        ),
        Endpoint("POST", one + "/revoke", "keys.revoke", revoke_key, "Revoke a key", tag, KeyOut, errors=(404, 409)),
        Endpoint(
            "POST",
            one + "/expire",
            "keys.revoke",
            expire_key,
            "Set a key's expiry (now by default)",
            tag,
            KeyOut,
            body=ExpireIn,
            errors=(404,),
        ),
    ]
