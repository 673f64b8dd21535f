"""/api/users: the people the directory (SCIM) or a first sign-in created, and their keys.

Users are directory data, owned by the identity provider through SCIM: the API reads them, and
deactivates or reactivates one the same way a SCIM `active` change does (`Directory.set_active`:
deactivation revokes all their keys at once). Everything else about a person is changed in the
directory. Admins, security auditors and viewers see everyone; anyone else sees themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sluice.admin.service import NotFound
from sluice.auth.directory import GROUP, SUBJECT, USER, Directory
from sluice.auth.rbac import Scope, widest_grant
from sluice.gateway_signin.service import GatewaySignin
from sluice.http.admin.framework import Call, Endpoint
from sluice.http.admin.keys import key_out, scope_of
from sluice.http.admin.schemas import KeyList, SigninList, SigninOut, UserDeactivated, UserList, UserOut
from sluice.storage.grants import GatewayGrant


def _directory(call: Call) -> Directory:
    directory: Directory = call.services.identity.directory
    return directory


def _email(body: dict[str, Any]) -> str | None:
    emails = [e for e in body.get("emails") or [] if isinstance(e, dict) and isinstance(e.get("value"), str)]
    primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    return primary["value"] if primary else None


def _user_out(user_id: str, body: dict[str, Any], groups: list[str]) -> UserOut:
    meta = body.get("meta") or {}
    return UserOut(
        id=user_id,
        user_name=body.get("userName"),
        display_name=body.get("displayName"),
        email=_email(body),
        external_id=body.get("externalId"),
        active=bool(body.get("active", True)),
        groups=sorted(set(groups)),
        signed_in=body.get(SUBJECT) is not None,
        created=meta.get("created"),
        last_modified=meta.get("lastModified"),
    )


async def _user(call: Call) -> tuple[str, dict[str, Any]]:
    user_id = call.path["user_id"]
    body = await _directory(call).get(USER, user_id)
    if body is None:
        raise NotFound(f"no user {user_id!r}")
    return user_id, body


async def list_users(call: Call) -> UserList:
    if widest_grant(call.principal, "users.read") == "none":
        call.authorize(Scope())
    objects = await _directory(call).store.list_objects()  # one read, however many people
    groups: dict[str, list[str]] = {}
    for group in (o for o in objects if o.kind == GROUP):
        names = [v for v in (group.body.get("displayName"), group.body.get("externalId")) if v]
        for member in group.body.get("members", []):
            groups.setdefault(str(member.get("value")), []).extend(names)
    users = [o for o in objects if o.kind == USER and call.allowed(Scope(user_id=o.id))]
    return UserList(items=[_user_out(o.id, o.body, groups.get(o.id, [])) for o in users])


async def get_user(call: Call) -> UserOut:
    user_id, body = await _user(call)
    call.authorize(Scope(user_id=user_id))
    return _user_out(user_id, body, await _directory(call).groups_of(user_id))


async def user_keys(call: Call) -> KeyList:
    """The user's keys (revoked ones too), each as far as the caller may read keys."""
    user_id, _ = await _user(call)
    call.authorize(Scope(user_id=user_id))
    keys = [k for k in await call.services.store.list_keys() if k.user_id == user_id]
    return KeyList(items=[key_out(k) for k in keys if call.allowed(scope_of(k), "keys.read")])


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _signin_out(grant: GatewayGrant) -> SigninOut:
    return SigninOut(
        id=grant.id,
        status=grant.status,  # sign_ins() keeps only approved, active, revoked
        surface=grant.surface,
        virtual_key_id=grant.key_id,
        created_at=datetime.fromtimestamp(grant.created_at, UTC),
        expires_at=datetime.fromtimestamp(grant.expires_at, UTC),
        revoked_at=_when(grant.revoked_at),
    )


def _signin(call: Call) -> GatewaySignin:
    signin: GatewaySignin | None = call.services.identity.gateway
    if signin is None:
        raise NotFound("the gateway sign-in is not configured (auth.gateway_signin)")
    return signin


async def user_signins(call: Call) -> SigninList:
    user_id, _ = await _user(call)
    call.authorize(Scope(user_id=user_id))
    return SigninList(items=[_signin_out(g) for g in await _signin(call).sign_ins(user_id)])


async def revoke_signin(call: Call) -> SigninOut:
    user_id, _ = await _user(call)
    call.authorize(Scope(user_id=user_id))
    grant = await _signin(call).revoke_one(user_id, call.path["signin_id"], call.principal.actor)
    if grant is None:
        raise NotFound(f"no sign-in {call.path['signin_id']!r} of user {user_id!r}")
    return _signin_out(grant)


async def _set_active(call: Call, active: bool) -> UserDeactivated:
    user_id, _ = await _user(call)
    call.authorize(Scope(user_id=user_id))
    directory = _directory(call)
    before = {k.id for k in await directory.keys_of(user_id)}
    body = await directory.set_active(user_id, active, call.principal.actor)
    if body is None:
        raise NotFound(f"no user {user_id!r}")
    after = {k.id for k in await directory.keys_of(user_id)}
    user = _user_out(user_id, body, await directory.groups_of(user_id))
    return UserDeactivated(user=user, revoked_keys=len(before - after))


async def deactivate_user(call: Call) -> UserDeactivated:
    return await _set_active(call, False)


async def activate_user(call: Call) -> UserDeactivated:
    return await _set_active(call, True)


def user_endpoints() -> list[Endpoint]:
    tag = "users"
    one = "/api/users/{user_id}"
    return [
        Endpoint("GET", "/api/users", "users.read", list_users, "List users", tag, UserList),
        Endpoint("GET", one, "users.read", get_user, "Read a user", tag, UserOut, errors=(404,)),
        Endpoint(
            "GET",
            one + "/keys",
            "users.read",
            user_keys,
            "A user's virtual keys",
            tag,
            KeyList,
            errors=(404,),
            description="Revoked keys included; only the keys the caller may read.",
        ),
        Endpoint(
            "GET",
            one + "/signins",
            "users.read",
            user_signins,
            "A user's agent sign-ins",
            tag,
            SigninList,
            errors=(404,),
            description="Their gateway sign-ins (auth.gateway_signin), active and ended, newest first.",
        ),
        Endpoint(
            "POST",
            one + "/signins/{signin_id}/revoke",
            "users.write",
            revoke_signin,
            "Revoke one agent sign-in",
            tag,
            SigninOut,
            errors=(404,),
            description="Its tokens are refused at the next request and it cannot refresh; an audit "
            "event `gateway_signin_revoked` and a configuration event. Their other sign-ins and keys stay.",
        ),
        Endpoint(
            "POST",
            one + "/deactivate",
            "users.write",
            deactivate_user,
            "Deactivate a user and revoke their keys",
            tag,
            UserDeactivated,
            errors=(404,),
            description="As a SCIM `active: false`: every key of the user is revoked at once; their "
            "session stops working. The directory may reactivate them on its next push.",
        ),
        Endpoint(
            "POST",
            one + "/activate",
            "users.write",
            activate_user,
            "Reactivate a user",
            tag,
            UserDeactivated,
            errors=(404,),
            description="As a SCIM `active: true`: a new key from their access profile (revoked keys stay revoked).",
        ),
    ]
