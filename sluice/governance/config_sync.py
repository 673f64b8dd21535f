"""The config file's governance objects (teams, customers, budgets, rate limits, access profiles)
and the live store: what the file declares is written to the store, each difference as a recorded
event. The store also holds objects no file declares (SCIM users and groups); they have no model
here and `parse_object` is not for them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sluice.settings import (
    AccessProfileConfig,
    BudgetConfig,
    CustomerConfig,
    RateLimitConfig,
    SessionCapConfig,
    SluiceConfig,
    TeamConfig,
)
from sluice.storage.ports import ConfigStore
from sluice.storage.records import ConfigEvent, ConfigObject

KINDS: dict[str, type[BaseModel]] = {
    "team": TeamConfig,
    "customer": CustomerConfig,
    "budget": BudgetConfig,
    "rate_limit": RateLimitConfig,
    "access_profile": AccessProfileConfig,
    "session_cap": SessionCapConfig,
}


def body_of(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_defaults=True)


def declared_objects(config: SluiceConfig) -> list[ConfigObject]:
    objects: list[ConfigObject] = []
    for kind, items in (
        ("team", config.teams),
        ("customer", config.customers),
        ("budget", config.budgets),
        ("rate_limit", config.rate_limits),
        ("access_profile", config.access_profiles),
        ("session_cap", config.session_caps),
    ):
        objects.extend(ConfigObject(kind, item.id, body_of(item), "config") for item in items)
    return objects


async def sync_from_file(store: ConfigStore, config: SluiceConfig, actor: str) -> list[ConfigEvent]:
    """Makes the store's file-declared objects equal to the file's. Objects made by other means
    (CLI, API) are left alone unless the file declares the same id, in which case the file wins."""
    declared = {(o.kind, o.id): o for o in declared_objects(config)}
    events = []
    for existing in await store.list_objects():
        # Only the kinds this file section declares: providers, routing and MCP objects in the
        # store come from the admin API or `sluice config apply`, never from this sync.
        if existing.source == "config" and existing.kind in KINDS and (existing.kind, existing.id) not in declared:
            event = await store.delete_object(existing.kind, existing.id, actor)
            if event:
                events.append(event)
    for obj in declared.values():
        event = await store.put_object(obj, actor)
        if event:
            events.append(event)
    return events


def parse_object(obj: ConfigObject) -> BaseModel:
    """The governance model of a team, customer, budget or rate limit (other kinds: see sluice.admin)."""
    return KINDS[obj.kind].model_validate(obj.body)
