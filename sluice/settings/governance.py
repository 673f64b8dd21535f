"""Virtual keys, teams, customers, budgets, rate limits and access profiles."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from sluice.settings.base import _check_duration, _Strict
from sluice.settings.mcp import McpAccess
from sluice.settings.providers import ProviderAccess
from sluice.settings.session_caps import ProfileSessionCap


class VirtualKeyConfig(_Strict):
    id: str = Field(min_length=1)
    name: str = ""
    description: str = ""
    value: SecretStr | None = None
    team_id: str | None = None
    customer_id: str | None = None
    is_active: bool = True
    expires_at: datetime | None = None
    provider_configs: list[ProviderAccess] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)  # models to try, in order, when the requested one fails
    mcp: McpAccess | None = None  # no block: no MCP tool at all (default deny)


class TeamConfig(_Strict):
    id: str = Field(min_length=1)
    name: str = ""
    customer_id: str | None = None
    mcp: McpAccess | None = None  # added to what each member key may use


class CustomerConfig(_Strict):
    id: str = Field(min_length=1)
    name: str = ""


class _Scoped(_Strict):
    """Attached to exactly one of a virtual key, a team or a customer."""

    id: str = Field(min_length=1)
    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> _Scoped:
        if sum(x is not None for x in (self.virtual_key_id, self.team_id, self.customer_id)) != 1:
            raise ValueError(f"{self.id!r} needs exactly one of virtual_key_id, team_id, customer_id")
        return self

    @property
    def scope(self) -> tuple[str, str]:
        if self.virtual_key_id is not None:
            return "virtual_key", self.virtual_key_id
        if self.team_id is not None:
            return "team", self.team_id
        assert self.customer_id is not None
        return "customer", self.customer_id


class BudgetConfig(_Scoped):
    max_limit: Decimal = Field(gt=0, description="dollars per window")
    reset_duration: str
    calendar_aligned: bool = False
    # What to do when the shared counter store (Redis) cannot be reached: refuse (default) or admit.
    fail_open: bool = False

    _duration = field_validator("reset_duration")(classmethod(lambda cls, v: _check_duration(v)))


class RateLimitConfig(_Scoped):
    token_max_limit: int | None = Field(default=None, gt=0)
    token_reset_duration: str | None = None
    request_max_limit: int | None = Field(default=None, gt=0)
    request_reset_duration: str | None = None
    max_concurrent_requests: int | None = Field(default=None, gt=0)
    fail_open: bool = False

    _durations = field_validator("token_reset_duration", "request_reset_duration")(
        classmethod(lambda cls, v: _check_duration(v))
    )

    @model_validator(mode="after")
    def _pairs(self) -> RateLimitConfig:
        _check_limit_pairs(self)
        return self


def _check_limit_pairs(rule: Any) -> None:
    for kind in ("token", "request"):
        limit, reset = getattr(rule, f"{kind}_max_limit"), getattr(rule, f"{kind}_reset_duration")
        if (limit is None) != (reset is None):
            raise ValueError(f"rate limit {rule.id!r}: {kind}_max_limit and {kind}_reset_duration go together")
    if rule.token_max_limit is None and rule.request_max_limit is None and rule.max_concurrent_requests is None:
        raise ValueError(f"rate limit {rule.id!r} limits nothing")


class GovernanceConfig(_Strict):
    # "local": counters in this process, spend in the store's ledger (one gateway process).
    # "redis": counters and reservations in Redis, shared by every replica.
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A reservation left by a crashed gateway is released after this many seconds.
    reservation_lease_s: float = Field(default=900, gt=0)
    # Output tokens reserved for a request that names no max_tokens; also the block a stream
    # reserves up front (at most) and extends by while it runs.
    default_max_tokens: int = Field(default=4096, gt=0)
    # What a stream reserves for its output up front: "block" (at most default_max_tokens, then
    # block by block while it runs; docs/budgets.md gives the overshoot bound) or "max_tokens"
    # (all of it, as a non-streamed answer does: no overshoot from hidden reasoning, but a budget's
    # last dollars refuse large max_tokens).
    stream_reservation: Literal["block", "max_tokens"] = "block"
    # A request refused only because other requests' reservations hold the budget (not because
    # settled spend leaves too little) waits up to this long for them to settle, then gets a 429
    # "busy" with Retry-After (never a 402). 0: answer the 429 at once.
    busy_wait_s: float = Field(default=3.0, ge=0, le=60)
    # Settlements the store cannot take (an outage) are fsynced here and replayed when it is back;
    # when this file cannot be written either (a full disk), budgeted answers are refused.
    spend_journal_path: str = "sluice-spend.journal.jsonl"


# Variables a routing rule may use (docs/routing.md describes each).


class ProfileBudget(_Strict):
    """A budget every key derived from an access profile gets for itself (not a shared pool)."""

    id: str = Field(min_length=1)
    max_limit: Decimal = Field(gt=0, description="dollars per window")
    reset_duration: str
    calendar_aligned: bool = False
    fail_open: bool = False

    _duration = field_validator("reset_duration")(classmethod(lambda cls, v: _check_duration(v)))


class ProfileRateLimit(_Strict):
    """A rate limit every key derived from an access profile gets for itself."""

    id: str = Field(min_length=1)
    token_max_limit: int | None = Field(default=None, gt=0)
    token_reset_duration: str | None = None
    request_max_limit: int | None = Field(default=None, gt=0)
    request_reset_duration: str | None = None
    max_concurrent_requests: int | None = Field(default=None, gt=0)
    fail_open: bool = False

    _durations = field_validator("token_reset_duration", "request_reset_duration")(
        classmethod(lambda cls, v: _check_duration(v))
    )

    @model_validator(mode="after")
    def _pairs(self) -> ProfileRateLimit:
        # As RateLimitConfig's, which each derived key's rule becomes: a rule that could not be
        # built would make every reload of the limits fail.
        _check_limit_pairs(self)
        return self


class AccessProfileConfig(_Strict):
    """What a person's virtual key may do, kept in one place: keys derived from a profile take
    their providers, models, fallbacks, MCP tools and per-key limits from it when they are loaded,
    so editing the profile changes every such key."""

    id: str = Field(min_length=1)
    name: str = ""
    # IdP groups whose members get this profile: group names, or ids (Entra puts object ids in
    # the groups claim). The highest `priority` wins when several profiles match a person.
    groups: list[str] = Field(default_factory=list)
    priority: int = 0
    team_id: str | None = None  # derived keys belong to this team (its budgets apply too)
    provider_configs: list[ProviderAccess] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)
    mcp: McpAccess | None = None
    budgets: list[ProfileBudget] = Field(default_factory=list)
    rate_limits: list[ProfileRateLimit] = Field(default_factory=list)
    # Caps each session of each derived key gets for itself (sluice.sessions.caps).
    session_caps: list[ProfileSessionCap] = Field(default_factory=list)
    # Claude Code's managed-settings.json for the profile's signed-in agents (permissions, env,
    # model defaults, the telemetry endpoint), served at /managed/settings (auth.gateway_signin).
    managed_settings: dict[str, Any] | None = None


# The admin roles (the same vocabulary as sluice.auth.principal.Role, which sits above settings).
