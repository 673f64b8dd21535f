"""Making a change: write it with its configuration event, copy the event into the audit log,
and rebuild what depends on it in this process before answering (other replicas follow the
store's version numbers within a second)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from sluice.admin.kinds import KINDS, Kind, keep_stored_secrets
from sluice.audit.log import AuditLog
from sluice.storage.ports import Store
from sluice.storage.records import ConfigEvent, ConfigObject

log = logging.getLogger("sluice.admin")
LIVE_KINDS = frozenset({"provider", "provider_key", "routing_rule", "alias", "tool_group", "mcp_server"})


class Reloadable(Protocol):
    async def reload(self) -> None: ...


class Conflict(Exception):
    """The object exists already (create) or is still referred to."""


class NotFound(Exception):
    pass


class Invalid(ValueError):
    """Valid by its model, but not storable (an id too long for the store, a NUL character)."""


def _storable(kind: str, object_id: str) -> None:
    if len(object_id) > 200 or "\x00" in object_id:
        raise Invalid(f"{kind.replace('_', ' ')} id must be at most 200 characters, without NUL")


def without_hashes(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """An event's body as shown or copied anywhere: admin tokens' bodies hold their hash, which
    stays in the store."""
    return None if body is None else {k: v for k, v in body.items() if not k.endswith("_hash")}


def shown(kind: str, body: dict[str, Any] | None) -> dict[str, Any] | None:
    """An event's body as shown or recorded anywhere (events API, audit log): no hash, and secrets
    as their env.NAME reference or `(encrypted)`, never even sealed."""
    body = without_hashes(body)
    known = KINDS.get(kind)
    return known.public(body) if body is not None and known is not None else body


async def record_changes(audit: AuditLog, events: list[ConfigEvent]) -> None:
    """Configuration changes go to the tamper-evident audit log too (when it is configured)."""
    for e in events:
        await audit.append(
            "config_change",
            e.actor,
            {
                "object": e.kind,
                "id": e.object_id,
                "action": e.action,
                "before": shown(e.kind, e.before),
                "after": shown(e.kind, e.after),
            },
        )


@dataclass
class AdminService:
    store: Store
    audit: AuditLog
    keys: Reloadable | None = None  # the key cache
    limits: Reloadable | None = None  # budgets and rate limits
    live: Reloadable | None = None  # providers, routing, MCP tool groups
    profiles: Reloadable | None = None  # access profiles (the key cache re-derives keys from them)

    async def recorded(self, events: list[ConfigEvent]) -> None:
        if not events:
            return
        await record_changes(self.audit, events)
        kinds = {e.kind for e in events}
        try:
            if "virtual_key" in kinds and self.keys is not None:
                await self.keys.reload()
            if "access_profile" in kinds and self.profiles is not None:
                await self.profiles.reload()  # tells the key cache, which re-derives its keys
            if kinds & {"budget", "rate_limit", "team", "customer", "access_profile"} and self.limits is not None:
                await self.limits.reload()  # a profile's budgets and rate limits are per-key rules
            if kinds & LIVE_KINDS and self.live is not None:
                await self.live.reload()
        except Exception:  # the change is stored; the followers will pick it up within a second
            log.exception("reloading after a configuration change failed")

    async def data_read(self, actor: str, action: str, details: dict[str, Any]) -> None:
        """Reading logs or exporting data is itself recorded (who looked at what)."""
        await self.audit.append("data_access", actor, {"action": action, **details})

    # -- configuration objects ----------------------------------------------------------------
    async def objects(self, kind: str) -> list[ConfigObject]:
        return [o for o in await self.store.list_objects() if o.kind == kind]

    async def get(self, kind: str, object_id: str) -> ConfigObject:
        for obj in await self.objects(kind):
            if obj.id == object_id:
                return obj
        raise NotFound(f"no {kind.replace('_', ' ')} {object_id!r}")

    async def create(self, kind: Kind, model: BaseModel, actor: str) -> ConfigObject:
        object_id = kind.ident(model)
        if any(o.id == object_id for o in await self.objects(kind.name)):
            raise Conflict(f"{kind.name.replace('_', ' ')} {object_id!r} exists already")
        return await self.put(kind, model, actor)

    async def put(self, kind: Kind, model: BaseModel, actor: str) -> ConfigObject:
        _storable(kind.name, kind.ident(model))
        current = next((o for o in await self.objects(kind.name) if o.id == kind.ident(model)), None)
        model = keep_stored_secrets(kind.name, model, current.body if current else None)
        obj = ConfigObject(kind.name, kind.ident(model), kind.stored_body(model), actor[:200])
        event = await self.store.put_object(obj, actor)
        await self.recorded([event] if event else [])
        return obj

    async def delete(self, kind: str, object_id: str, actor: str) -> None:
        event = await self.store.delete_object(kind, object_id, actor)
        if event is None:
            raise NotFound(f"no {kind.replace('_', ' ')} {object_id!r}")
        await self.recorded([event])

    async def apply(self, put: list[ConfigObject], delete: list[tuple[str, str]], actor: str) -> list[ConfigEvent]:
        events = await self.store.apply_objects(put, delete, actor)
        await self.recorded(events)
        return events

    async def team_cap(self, team_id: str) -> Any:
        """The smallest budget attached to the team (dollars), or None when it has none."""
        caps = [KINDS["budget"].parse(o.body) for o in await self.objects("budget") if o.body.get("team_id") == team_id]
        return min((c.max_limit for c in caps), default=None)  # type: ignore[attr-defined]
