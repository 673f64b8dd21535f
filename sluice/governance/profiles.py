"""Access profiles: one object with everything a person's virtual key may do.

A key with a `profile_id` is derived at load time: its grants, fallbacks, MCP tools and per-key
limits come from the profile as it is now, not from the fields stored with the key. Editing a
profile therefore changes every key derived from it on the next request (within one refresh
interval on other replicas), and there is nothing to rewrite or to get half-rewritten. A key whose
profile is gone derives to nothing: no provider, no tool (fail closed).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable

from sluice.core.names import fold
from sluice.governance.config_sync import parse_object
from sluice.governance.refresh import Follower, VersionWatch
from sluice.settings import AccessProfileConfig, BudgetConfig, RateLimitConfig
from sluice.storage.ports import ConfigStore
from sluice.storage.records import ProviderGrant, VirtualKey

log = logging.getLogger("sluice.profiles")
KIND = "access_profile"


def derive(key: VirtualKey, profile: AccessProfileConfig | None) -> VirtualKey:
    """The key as its profile makes it (pure). Keys without a profile are returned unchanged."""
    if key.profile_id is None:
        return key
    if profile is None:
        return dataclasses.replace(
            key, grants=(), fallbacks=(), mcp_tools=(), mcp_tool_groups=(), mcp_resources=(), mcp_prompts=()
        )
    return dataclasses.replace(
        key,
        grants=tuple(ProviderGrant(p.provider, p.weight, tuple(p.allowed_models)) for p in profile.provider_configs),
        fallbacks=tuple(profile.fallbacks),
        mcp_tools=tuple(profile.mcp.tools) if profile.mcp else (),
        mcp_tool_groups=tuple(profile.mcp.tool_groups) if profile.mcp else (),
        mcp_resources=tuple(profile.mcp.resources) if profile.mcp else (),
        mcp_prompts=tuple(profile.mcp.prompts) if profile.mcp else (),
        team_id=key.team_id or profile.team_id,
    )


def profile_limits(profile: AccessProfileConfig, key_id: str) -> tuple[list[BudgetConfig], list[RateLimitConfig]]:
    """The profile's budgets and rate limits as rules of one key: every derived key has its own
    counters (a profile's "$50 a month" is per developer, not a pool they share). Rule ids name
    the profile, the rule and the key, so a refusal says where the limit comes from."""
    budgets = [
        BudgetConfig(
            id=f"{profile.id}/{b.id}@{key_id}",
            virtual_key_id=key_id,
            max_limit=b.max_limit,
            reset_duration=b.reset_duration,
            calendar_aligned=b.calendar_aligned,
            fail_open=b.fail_open,
        )
        for b in profile.budgets
    ]
    rate_limits = [
        RateLimitConfig(
            id=f"{profile.id}/{r.id}@{key_id}",
            virtual_key_id=key_id,
            token_max_limit=r.token_max_limit,
            token_reset_duration=r.token_reset_duration,
            request_max_limit=r.request_max_limit,
            request_reset_duration=r.request_reset_duration,
            max_concurrent_requests=r.max_concurrent_requests,
            fail_open=r.fail_open,
        )
        for r in profile.rate_limits
    ]
    return budgets, rate_limits


def profile_for_groups(
    profiles: Iterable[AccessProfileConfig], groups: Iterable[str], default: str | None = None
) -> str | None:
    """The profile a member of `groups` gets: the matching one of highest priority (the first
    declared on a tie), else the default."""
    have = {fold(g) for g in groups}
    best: AccessProfileConfig | None = None
    for profile in profiles:
        if any(fold(g) in have for g in profile.groups) and (best is None or profile.priority > best.priority):
            best = profile
    return best.id if best else default


class ProfileBook:
    """The access profiles of the live configuration, followed in the store; tells subscribers
    (the key cache) when they change so derived keys are rebuilt."""

    def __init__(self, store: ConfigStore, *, refresh_interval: float = 1.0, watch: VersionWatch | None = None) -> None:
        """`watch`: the `config_version` watch shared with the other followers of it."""
        self._store = store
        self.profiles: dict[str, AccessProfileConfig] = {}
        self._subscribers: list[Callable[[], Awaitable[None]]] = []
        self._follower = Follower("profiles", watch or store.config_version, self._load, interval=refresh_interval)

    def subscribe(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._subscribers.append(callback)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    async def reload(self) -> None:
        await self._follower.load()

    async def _load(self) -> None:
        found: dict[str, AccessProfileConfig] = {}
        for obj in await self._store.list_objects():
            if obj.kind == KIND:
                model = parse_object(obj)
                assert isinstance(model, AccessProfileConfig)
                found[model.id] = model
        if found == self.profiles:
            return  # another kind of object changed (a SCIM user, a budget)
        self.profiles = found
        for callback in self._subscribers:
            await callback()

    def derive(self, key: VirtualKey) -> VirtualKey:
        return derive(key, self.profiles.get(key.profile_id) if key.profile_id else None)
