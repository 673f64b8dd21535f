"""What a team lead may give: everything a lead creates or changes stays inside the team.

RBAC (sluice/auth/rbac.py) decides *which* keys a lead may touch (their teams'); this decides
*what* they may put on them, against what the team itself may use:
- the customer is the team's (filled in when left out, refused when another);
- the person a key is attached to is a member of the team (their access profile belongs to it)
  or the lead themselves;
- provider grants, MCP tools and tool groups, and the access profile stay within the team's:
  the union of the access profiles attached to the team (`team_id`) plus the team's own `mcp`.
A team with no profile may use nothing, so its lead issues keys without grants only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.auth.directory import Directory
from sluice.settings import AccessProfileConfig
from sluice.storage.records import ProviderGrant, VirtualKey

_WILDCARDS = set("*?[")


@dataclass(frozen=True, slots=True)
class TeamAllowance:
    team_id: str
    customer_id: str | None
    grants: tuple[ProviderGrant, ...] = ()
    mcp_tools: frozenset[str] = field(default_factory=frozenset)
    mcp_tool_groups: frozenset[str] = field(default_factory=frozenset)
    profiles: frozenset[str] = field(default_factory=frozenset)


def allowance_of(
    team_id: str, team: Mapping[str, Any] | None, profiles: Iterable[AccessProfileConfig]
) -> TeamAllowance:
    mine = [p for p in profiles if p.team_id == team_id]
    team_mcp = (team or {}).get("mcp") or {}
    tools = {*team_mcp.get("tools", ()), *(t for p in mine if p.mcp for t in p.mcp.tools)}
    groups = {*team_mcp.get("tool_groups", ()), *(g for p in mine if p.mcp for g in p.mcp.tool_groups)}
    return TeamAllowance(
        team_id,
        (team or {}).get("customer_id"),
        tuple(ProviderGrant(g.provider, g.weight, tuple(g.allowed_models)) for p in mine for g in p.provider_configs),
        frozenset(tools),
        frozenset(groups),
        frozenset(p.id for p in mine),
    )


def _wildcard(grant: ProviderGrant) -> bool:
    return not grant.allowed_models or "*" in grant.allowed_models


def _model_within(provider: str, model: str, team: Iterable[ProviderGrant]) -> bool:
    bare = model.removeprefix(f"{provider}/")
    for t in team:
        if t.provider != provider:
            continue
        if _wildcard(t) or bare in t.allowed_models or f"{provider}/{bare}" in t.allowed_models:
            return True
    return False


def grant_overreach(grants: Iterable[ProviderGrant], allowance: TeamAllowance) -> str | None:
    for g in grants:
        team = [t for t in allowance.grants if t.provider == g.provider]
        if not team:
            return f"team {allowance.team_id!r} may not use provider {g.provider!r}"
        if _wildcard(g):
            if not any(_wildcard(t) for t in team):
                return f"team {allowance.team_id!r} may use only some models of {g.provider!r}, not all"
            continue
        for model in g.allowed_models:
            if not _model_within(g.provider, model, team):
                return f"team {allowance.team_id!r} may not use model {model!r} of {g.provider!r}"
    return None


def _pattern_within(pattern: str, allowed: frozenset[str]) -> bool:
    # A lead's wildcard must be one the team has verbatim: "srv/*" is not within "srv/?".
    if pattern in allowed:
        return True
    return not (_WILDCARDS & set(pattern)) and any(fnmatch.fnmatchcase(pattern, a) for a in allowed)


def mcp_overreach(tools: Iterable[str], groups: Iterable[str], allowance: TeamAllowance) -> str | None:
    for tool in tools:
        if not _pattern_within(tool, allowance.mcp_tools):
            return f"team {allowance.team_id!r} may not use MCP tool {tool!r}"
    for group in groups:
        if group not in allowance.mcp_tool_groups:
            return f"team {allowance.team_id!r} may not use MCP tool group {group!r}"
    return None


async def is_member(directory: Directory, user_id: str, allowance: TeamAllowance) -> bool:
    """Whether the person belongs to the team: their access profile is one of the team's."""
    profile = await directory.profile_of(user_id)
    return profile is not None and profile in allowance.profiles


async def team_overreach(
    key: VirtualKey,
    changed: Iterable[str],
    allowance: TeamAllowance,
    directory: Directory,
    lead_user_id: str | None,
) -> str | None:
    """Why the lead may not set `changed` fields of `key` (as it would be stored) so, or None."""
    fields = set(changed)
    if fields & {"customer_id", "team_id"} and key.customer_id != allowance.customer_id:
        return f"keys of team {allowance.team_id!r} belong to customer {allowance.customer_id!r}"
    if "user_id" in fields and key.user_id is not None and key.user_id != lead_user_id:
        if not await is_member(directory, key.user_id, allowance):
            return f"user {key.user_id!r} is not a member of team {allowance.team_id!r}"
    if "profile_id" in fields and key.profile_id is not None and key.profile_id not in allowance.profiles:
        return f"access profile {key.profile_id!r} is not one of team {allowance.team_id!r}"
    if "grants" in fields and (why := grant_overreach(key.grants, allowance)):
        return why
    if fields & {"mcp_tools", "mcp_tool_groups"} and (
        why := mcp_overreach(key.mcp_tools, key.mcp_tool_groups, allowance)
    ):
        return why
    return None
