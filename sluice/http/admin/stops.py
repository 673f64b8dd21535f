"""/api/stops: the kill switch (sluice.sessions.stops). Stop one session, one key, one team or the
whole organisation, list the stops in force (or all, with their history), and resume. Each
change is recorded in the audit log with who and why (by `Stops`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sluice.auth.rbac import Scope, widest_grant
from sluice.http.admin.framework import ApiError, Call, Endpoint
from sluice.sessions.stops import Stops, normalised
from sluice.storage.records import Stop

ScopeName = Literal["session", "key", "team", "org"]


class StopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: ScopeName
    target: str = Field(default="", max_length=300, description="the session, key or team id; empty for org")
    key_id: str | None = Field(default=None, max_length=64, description="a session of this key only")
    reason: str = Field(min_length=1, max_length=2000)


class StopsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: bool = False  # lifted stops too (the history)


class StopOut(BaseModel):
    id: int
    scope: str
    target: str
    key_id: str | None
    reason: str
    actor: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    lift_reason: str | None


class StopList(BaseModel):
    items: list[StopOut]


def stop_out(stop: Stop) -> StopOut:
    return StopOut(
        id=stop.id,
        scope="key" if stop.scope == "virtual_key" else stop.scope,
        target=stop.target,
        key_id=stop.key_id,
        reason=stop.reason,
        actor=stop.actor,
        created_at=stop.created_at,
        lifted_at=stop.lifted_at,
        lifted_by=stop.lifted_by,
        lift_reason=stop.lift_reason,
    )


def _stops(call: Call) -> Stops:
    stops: Stops | None = call.services.stops
    if stops is None:
        raise ApiError(503, "not_configured", "The kill switch is not running in this process.")
    return stops


async def _scope(call: Call, body: StopIn) -> Scope:
    """What the stop touches, for RBAC: a key's team (and owner), a team, else everything (the
    organisation, or a session named without its key: only an admin)."""
    key_id = body.target if body.scope == "key" else body.key_id
    if key_id:
        key = await call.services.store.key_by_id(key_id)
        if key is None:
            raise ApiError(404, "not_found", f"virtual key {key_id!r} not found")
        return Scope(team_id=key.team_id, user_id=key.user_id)
    if body.scope == "team":
        return Scope(team_id=body.target)
    return Scope()


def _checked(body: StopIn) -> tuple[str, str]:
    try:
        return normalised(body.scope, body.target)
    except ValueError as exc:
        raise ApiError(
            422, "validation_error", str(exc), [{"loc": ["body", "target"], "msg": str(exc), "type": "value_error"}]
        ) from None


async def visible_stops(call: Call, active_only: bool) -> list[Stop]:
    """The stops the caller may see: all of them, or for a team lead those on their teams, on
    their teams' keys and on sessions of those keys, and the organisation's (which stops them
    too). A session stop made without its key could be anyone's: an admin's to see."""
    stops: list[Stop] = await call.services.store.list_stops(active_only=active_only)
    if call.allowed(Scope()):
        return stops
    if widest_grant(call.principal, call.action) != "team":
        call.authorize(Scope())  # raises with the reason
    teams, key_teams = call.principal.teams, dict[str, str | None]()
    shown = []
    for stop in stops:
        key_id = stop.target if stop.scope == "virtual_key" else stop.key_id
        if key_id is not None and key_id not in key_teams:
            key = await call.services.store.key_by_id(key_id)
            key_teams[key_id] = key.team_id if key is not None else None
        team = stop.target if stop.scope == "team" else key_teams.get(key_id) if key_id else None
        if stop.scope == "org" or (team is not None and team in teams):
            shown.append(stop)
    return shown


async def list_stops(call: Call) -> StopList:
    return StopList(items=[stop_out(s) for s in await visible_stops(call, not call.query.all)])


async def create_stop(call: Call) -> StopOut:
    body: StopIn = call.body
    scope, target = _checked(body)
    call.authorize(await _scope(call, body))
    stop = await _stops(call).throw(scope, target, body.reason, call.principal.actor, key_id=body.key_id)
    return stop_out(stop)


async def resume(call: Call) -> StopList:
    body: StopIn = call.body
    scope, target = _checked(body)
    call.authorize(await _scope(call, body))
    lifted = await _stops(call).lift(scope, target, body.reason, call.principal.actor, key_id=body.key_id)
    return StopList(items=[stop_out(s) for s in lifted])


def stop_endpoints() -> list[Endpoint]:
    tag = "kill switch"
    return [
        Endpoint("GET", "/api/stops", "stops.read", list_stops, "List stops", tag, StopList, query=StopsQuery),
        Endpoint(
            "POST",
            "/api/stops",
            "stops.write",
            create_stop,
            "Stop a session, key, team or the organisation",
            tag,
            StopOut,
            201,
            body=StopIn,
            errors=(404,),
            description="Effective on every replica within the kill switch's poll interval; streams in flight "
            "in its scope end with the surface's in-stream error.",
        ),
        Endpoint(
            "POST",
            "/api/stops/resume",
            "stops.write",
            resume,
            "Resume what a stop stopped",
            tag,
            StopList,
            body=StopIn,
            errors=(404,),
            description="Lifts the stops in force on exactly this scope and target; answers the stops lifted "
            "(none: nothing was stopped there).",
        ),
    ]
