"""Plain records that cross the storage ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class ProviderGrant:
    """One provider a virtual key may use, its routing weight and allowed models."""

    provider: str
    weight: float = 1.0
    allowed_models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VirtualKey:
    id: str
    name: str
    key_hash: str  # sha256 hex of the secret; the secret itself is never stored
    key_hint: str  # first characters of the secret, to recognise it in listings
    grants: tuple[ProviderGrant, ...] = ()
    description: str = ""
    team_id: str | None = None
    customer_id: str | None = None
    is_active: bool = True
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    source: str = "api"  # "config" when seeded from the config file
    created_at: datetime | None = None
    fallbacks: tuple[str, ...] = ()  # models to try, in order, when the requested one fails
    mcp_tools: tuple[str, ...] = ()  # MCP tools the key may use: `server/tool`, `server/*`
    mcp_tool_groups: tuple[str, ...] = ()
    mcp_resources: tuple[str, ...] = ()  # `server/<uri pattern>`
    mcp_prompts: tuple[str, ...] = ()
    user_id: str | None = None  # the person the key belongs to (SSO or SCIM user id)
    profile_id: str | None = None  # the access profile the key's policy derives from
    # A rotated key's old secret keeps working until `previous_valid_until` (overlap period).
    previous_key_hash: str | None = None
    previous_valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    request_id: str
    ts: datetime
    path: str
    surface: str
    status: int
    decision: str  # allow | deny | error
    reason: str | None = None
    error_kind: str | None = None
    virtual_key_id: str | None = None
    virtual_key_name: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    client: str = ""
    session_id: str | None = None
    user_id: str | None = None
    provider: str | None = None
    provider_key_name: str | None = None
    requested_model: str | None = None
    model: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_pico: int = 0
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    route: str | None = None
    # MCP tools (`server__tool`) the same agent session called since its previous LLM call.
    mcp_tools: tuple[str, ...] = ()
    guardrails: int = 0  # guardrail decisions on this request (each an audit event `guardrail`)
    # Where the agent works, as it said (x-sluice-repo, x-sluice-branch, x-sluice-cwd; sluice.http.identity).
    repo: str | None = None
    branch: str | None = None
    cwd: str | None = None


class LoggedRequest(NamedTuple):
    """The request log's facts a policy replay needs (`RequestLogStore.logged_requests`)."""

    request_id: str
    ts: datetime
    path: str
    surface: str
    decision: str
    error_kind: str | None
    virtual_key_id: str | None
    team_id: str | None
    client: str
    session_id: str | None
    provider: str | None
    requested_model: str | None
    model: str | None
    stream: bool
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_pico: int


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Filters over the request log (each None: no filter), newest first, paged by offset."""

    since: datetime | None = None
    until: datetime | None = None
    virtual_key_ids: tuple[str, ...] | None = None
    team_ids: tuple[str, ...] | None = None
    owner_user_id: str | None = None  # the Sluice user the key belongs to
    model: str | None = None
    provider: str | None = None
    decision: str | None = None
    status: int | None = None
    session_id: str | None = None  # the agent session the client named
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Filters over the ledger (None: any). A session matches `since`/`until` when it was active
    in that span (ended at or after `since`, started before `until`). Newest activity first."""

    since: datetime | None = None
    until: datetime | None = None
    virtual_key_ids: tuple[str, ...] | None = None
    team_ids: tuple[str, ...] | None = None
    owner_user_id: str | None = None  # the Sluice user the key belongs to (the developer)
    client: str | None = None
    repo: str | None = None
    branch: str | None = None
    session_id: str | None = None  # the id the client sent
    min_cost_pico: int | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One admitted request's settled consumption, the durable source of every limit's usage."""

    request_id: str
    ts: datetime  # when the request was admitted: it counts in the windows it was admitted in
    virtual_key_id: str
    team_id: str | None
    customer_id: str | None
    cost_pico: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """One counter a limit keeps for one window: spend, tokens, requests or requests in flight."""

    key: str  # "<rule id>:<what>:<window start>"
    limit: int
    expires_at: float  # Unix time the window ends (0: no window, e.g. requests in flight)


@dataclass(frozen=True, slots=True)
class BucketState:
    used: int  # settled usage
    reserved: int  # every live reservation, this request's included
    held: int = 0  # of which this request's own (from `reserve`; 0 elsewhere)


@dataclass(frozen=True, slots=True)
class ConfigObject:
    """A governance object (team, customer, budget, rate limit) as its config document."""

    kind: str
    id: str
    body: dict[str, Any]
    source: str = "config"  # "config" when it comes from the config file; else who made it


@dataclass(frozen=True, slots=True)
class ConfigEvent:
    ts: datetime
    actor: str
    kind: str
    object_id: str
    action: str  # create | update | delete
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    ts: datetime
    kind: str  # request | auth_failure | config_change | data_access | ...
    actor: str  # who: a virtual key id, "cli:<user>", "file:<path>", an admin's subject
    data: dict[str, Any]
    key_id: str
    prev_mac: str
    mac: str

    def body(self) -> dict[str, Any]:
        """What the MAC covers."""
        return {
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "kind": self.kind,
            "actor": self.actor,
            "data": self.data,
            "key_id": self.key_id,
            "prev_mac": self.prev_mac,
        }


STOP_SCOPES = ("session", "virtual_key", "team", "org")


@dataclass(frozen=True, slots=True)
class Stop:
    """A kill switch thrown (sluice.sessions.stops): requests in its scope are refused, and its
    streams in flight end, until it is lifted. `key_id` narrows a session stop to one key's
    session (a runaway pause), so another key naming the same session id is not stopped by it."""

    id: int
    scope: str  # one of STOP_SCOPES
    target: str  # the session id, key id or team id; "" for the organisation
    key_id: str | None
    reason: str
    actor: str
    created_at: datetime
    lifted_at: datetime | None = None
    lifted_by: str | None = None
    lift_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AlertClaim:
    """An alert's claim (sluice.alerts.monitor): the one row that says who raised it, so it is
    raised once for every replica, and that keeps the claimed alert itself (its facts: hashes and
    figures, never content) until it is in the audit log, so a claim left pending by a process
    that died is raised again by another."""

    key: str  # sha256 hex (40) of the alert id
    alert_id: str
    state: str  # "pending" (claimed, not yet in the audit log) or "recorded"
    token: int  # changes at every claim, renewal and takeover: the compare-and-set's witness
    claimed_ms: int  # Unix ms of the claim, its last renewal, or its record
    keep_until_ms: int  # kept at least until then: the same alert can be raised again until it
    audit_after: int  # the audit log's head (seq) before the claim: its record, if any, is after
    alert: dict[str, Any] | None = None  # None for a threshold claimed quietly
