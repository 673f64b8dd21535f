"""/api/<kind>: teams, customers, budgets, rate limits, providers and provider keys, MCP servers
and tool groups, routing rules and aliases: one set of handlers over the ConfigStore kinds.

Budgets carry their own rules: one attached to a key is managed by the key's team lead within
the team's cap (the smallest budget attached to the team); one attached to a team or a customer
is a cap, which only an admin sets.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sluice.admin.kinds import KINDS, Kind
from sluice.admin.service import Conflict
from sluice.auth.rbac import Scope, widest_grant
from sluice.http.admin.framework import Call, Endpoint
from sluice.http.admin.schemas import ConfigObjectList, ConfigObjectOut
from sluice.settings import BudgetConfig
from sluice.storage.records import ConfigObject


def _out(kind: Kind, obj: ConfigObject) -> ConfigObjectOut:
    return ConfigObjectOut(kind=obj.kind, id=obj.id, body=kind.public(obj.body), source=obj.source)


async def _budget_target(call: Call, body: dict[str, Any]) -> tuple[str, Scope]:
    """The action and scope of writing a budget with this body."""
    if body.get("virtual_key_id") is None:
        return "caps.write", Scope(team_id=body.get("team_id"))
    key = await call.services.store.key_by_id(body["virtual_key_id"])
    if key is None:
        return "budgets.write", Scope()  # no such key: only a global grant may attach to it
    return "budgets.write", Scope(team_id=key.team_id, user_id=key.user_id)


async def _read_scope(call: Call, kind: Kind, obj: ConfigObject) -> Scope:
    if kind.name != "budget":
        return Scope()
    if obj.body.get("team_id") is not None:
        return Scope(team_id=obj.body["team_id"])
    return (await _budget_target(call, obj.body))[1]


async def _authorize_write(call: Call, kind: Kind, body: dict[str, Any], new: BaseModel | None) -> None:
    if kind.name != "budget":
        call.authorize(Scope())
        return
    action, scope = await _budget_target(call, body)
    if isinstance(new, BudgetConfig) and action == "budgets.write" and scope.team_id is not None:
        cap = await call.services.admin.team_cap(scope.team_id)
        within = cap is None or new.max_limit <= cap
        scope = Scope(team_id=scope.team_id, user_id=scope.user_id, within_cap=within)
    call.authorize(scope, action)


def _check_id(kind: Kind, model: BaseModel, object_id: str) -> None:
    # A body naming another object than its path is a conflict between the two, not a malformed
    # body (each is valid alone), so 409 rather than 422.
    ident = kind.ident(model)
    if ident != object_id:
        raise Conflict(f"the body names {kind.name.replace('_', ' ')} {ident!r} but the path says {object_id!r}")


async def _references(call: Call, kind: Kind, model: BaseModel) -> None:
    if kind.name == "provider_key":
        provider = model.provider  # type: ignore[attr-defined]
        if not any(o.id == provider for o in await call.services.admin.objects("provider")):
            raise Conflict(
                f"provider {provider!r} is not in the store; create it first (PUT /api/providers/{provider})"
            )


def object_endpoints(kind: Kind) -> list[Endpoint]:
    async def list_objects(call: Call) -> ConfigObjectList:
        action = "budgets.read" if kind.name == "budget" else kind.action_read
        if widest_grant(call.principal, action) == "none":
            call.authorize(Scope())
        found = [
            o for o in await call.services.admin.objects(kind.name) if call.allowed(await _read_scope(call, kind, o))
        ]
        return ConfigObjectList(items=[_out(kind, o) for o in found])

    async def get_object(call: Call) -> ConfigObjectOut:
        obj = await call.services.admin.get(kind.name, call.path["object_id"])
        call.authorize(await _read_scope(call, kind, obj))
        return _out(kind, obj)

    async def create_object(call: Call) -> ConfigObjectOut:
        await _authorize_write(call, kind, call.body.model_dump(), call.body)
        await _references(call, kind, call.body)
        return _out(kind, await call.services.admin.create(kind, call.body, call.principal.actor))

    async def put_object(call: Call) -> ConfigObjectOut:
        object_id = call.path["object_id"]
        _check_id(kind, call.body, object_id)
        existing = [o for o in await call.services.admin.objects(kind.name) if o.id == object_id]
        for old in existing:  # replacing needs the right over what is replaced, too
            await _authorize_write(call, kind, old.body, None)
        await _authorize_write(call, kind, call.body.model_dump(), call.body)
        await _references(call, kind, call.body)
        return _out(kind, await call.services.admin.put(kind, call.body, call.principal.actor))

    async def delete_object(call: Call) -> None:
        obj = await call.services.admin.get(kind.name, call.path["object_id"])
        await _authorize_write(call, kind, obj.body, None)
        if kind.name == "provider":
            keys = [o.id for o in await call.services.admin.objects("provider_key") if o.body.get("provider") == obj.id]
            if keys:
                raise Conflict(f"provider {obj.id!r} still has keys {', '.join(keys)}; delete them first")
        await call.services.admin.delete(kind.name, obj.id, call.principal.actor)

    read = "budgets.read" if kind.name == "budget" else kind.action_read
    write = kind.action_write
    label = kind.name.replace("_", " ")
    tag, base, one = kind.path.replace("-", " "), f"/api/{kind.path}", f"/api/{kind.path}/{{object_id}}"
    model = kind.model
    return [
        Endpoint("GET", base, read, list_objects, f"List {label}s", tag, ConfigObjectList),
        Endpoint(
            "POST", base, write, create_object, f"Create a {label}", tag, ConfigObjectOut, 201, model, errors=(409,)
        ),
        Endpoint("GET", one, read, get_object, f"Read a {label}", tag, ConfigObjectOut, errors=(404,)),
        Endpoint(
            "PUT",
            one,
            write,
            put_object,
            f"Create or replace a {label}",
            tag,
            ConfigObjectOut,
            body=model,
            errors=(409,),
        ),
        Endpoint("DELETE", one, write, delete_object, f"Delete a {label}", tag, None, 204, errors=(404, 409)),
    ]


def all_object_endpoints() -> list[Endpoint]:
    return [ep for kind in KINDS.values() for ep in object_endpoints(kind)]
