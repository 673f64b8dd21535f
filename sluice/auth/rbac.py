"""Who may do what on the admin surfaces: one pure function over one table.

Every admin endpoint names an action; the handler finds the scope of the resource it touches
(the team and the user a key belongs to, whether a budget stays within its team's cap) and asks
`decide`. No I/O here, so the whole role x action x scope matrix is testable in microseconds.

A grant is one of:
  all   - any resource
  team  - resources of a team the principal leads (`Principal.teams`); never unscoped ones
  self  - resources of the principal's own user (`Principal.user_id`)
  none  - nothing (the default for any role an action does not mention)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sluice.auth.principal import ROLES, Principal, Role

Grant = Literal["all", "team", "self", "none"]

ACTIONS: dict[str, dict[Role, Grant]] = {
    # Who the caller is; every role may ask.
    "me.read": {"admin": "all", "security-auditor": "all", "team-lead": "all", "developer": "all", "viewer": "all"},
    # Virtual keys. Listings never show secrets or hashes, so reading is not a secret.
    "keys.read": {"admin": "all", "security-auditor": "all", "team-lead": "team", "developer": "self", "viewer": "all"},
    "keys.create": {"admin": "all", "team-lead": "team"},
    "keys.update": {"admin": "all", "team-lead": "team"},
    "keys.rotate": {"admin": "all", "team-lead": "team", "developer": "self"},
    "keys.revoke": {"admin": "all", "team-lead": "team"},
    # Budgets attached to a key. A team lead may set them for their team's keys, within the cap.
    "budgets.read": {
        "admin": "all",
        "security-auditor": "all",
        "team-lead": "team",
        "developer": "self",
        "viewer": "all",
    },
    "budgets.write": {"admin": "all", "team-lead": "team"},
    # Budgets attached to a team or a customer are caps: only an admin sets them, so a team lead
    # can neither raise another team's budget nor their own team's cap.
    "caps.write": {"admin": "all"},
    # Every other configuration object: teams, customers, rate limits, providers and their keys,
    # MCP servers and tool groups, routing rules and aliases.
    "config.read": {"admin": "all", "security-auditor": "all", "team-lead": "all", "viewer": "all"},
    "config.write": {"admin": "all"},
    # Access profiles: what keys allocated to people from their directory groups may do.
    "profiles.read": {"admin": "all", "security-auditor": "all", "team-lead": "all", "viewer": "all"},
    "profiles.write": {"admin": "all"},
    # People (SCIM or single sign-on users). Everyone may see themselves; deactivating someone
    # revokes their keys, as the directory's deactivation does.
    "users.read": {
        "admin": "all",
        "security-auditor": "all",
        "team-lead": "self",
        "developer": "self",
        "viewer": "all",
    },
    "users.write": {"admin": "all"},
    # Usage and logs. Data reads are recorded in the audit log by the handlers.
    "spend.read": {"admin": "all", "security-auditor": "all", "team-lead": "team", "developer": "self"},
    "requests.read": {"admin": "all", "security-auditor": "all"},
    "audit.read": {"admin": "all", "security-auditor": "all"},
    "events.read": {"admin": "all", "security-auditor": "all"},
    # Admin API tokens.
    "tokens.manage": {"admin": "all"},
    # The kill switch: a team lead may see, stop and resume their team's keys and sessions (of a
    # named key); stopping the organisation, or a session without its key, is an admin's.
    "stops.read": {"admin": "all", "security-auditor": "all", "team-lead": "team", "viewer": "all"},
    "stops.write": {"admin": "all", "team-lead": "team"},
}


@dataclass(frozen=True, slots=True)
class Scope:
    """What the resource belongs to. Both None: a global resource (or "all of them")."""

    team_id: str | None = None
    user_id: str | None = None
    # For budget writes: the new limit stays within the team's cap. Checked only for team grants
    # (an admin sets caps, so an admin's budgets are not bounded by them).
    within_cap: bool = True


GLOBAL = Scope()


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def grant_of(role: Role, action: str) -> Grant:
    return ACTIONS[action].get(role, "none")


def decide(principal: Principal, action: str, scope: Scope = GLOBAL) -> Decision:
    """Allowed when any of the principal's roles grants the action on this scope."""
    if action not in ACTIONS:
        return Decision(False, f"unknown action {action!r}")  # fail closed: a typo denies
    reasons = []
    for role in sorted(principal.roles):
        if role not in ROLES:
            continue
        grant = grant_of(role, action)
        if grant == "all":
            return Decision(True, f"{role} may {action}")
        if grant == "team":
            if scope.team_id is None or scope.team_id not in principal.teams:
                reasons.append(f"{role} may {action} only for teams they lead")
            elif not scope.within_cap:
                reasons.append(f"{role} may {action} only within the team's cap")
            else:
                return Decision(True, f"{role} of team {scope.team_id} may {action}")
        elif grant == "self":
            if principal.user_id is not None and scope.user_id == principal.user_id:
                return Decision(True, f"{role} may {action} on their own resources")
            reasons.append(f"{role} may {action} only on their own resources")
    if not reasons:
        roles = ", ".join(sorted(principal.roles)) or "no role"
        reasons.append(f"{roles} may not {action}")
    return Decision(False, "; ".join(reasons))


def allowed(principal: Principal, action: str, scope: Scope = GLOBAL) -> bool:
    return decide(principal, action, scope).allowed


def widest_grant(principal: Principal, action: str) -> Grant:
    """The widest grant the principal's roles give for an action ("all" beats "team" beats
    "self"), so a listing knows whether to filter."""
    order: tuple[Grant, ...] = ("all", "team", "self")
    grants = {grant_of(role, action) for role in principal.roles if role in ROLES and action in ACTIONS}
    return next((g for g in order if g in grants), "none")
