"""Request and response models of the admin API; the OpenAPI document is generated from them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from sluice.auth.principal import Role

ID = r"^[A-Za-z0-9._@:-]+$"


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


Time = Annotated[AwareDatetime, AfterValidator(_utc)]
Id = Annotated[str, Field(min_length=1, max_length=200, pattern=ID)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grant(_In):
    provider: str = Field(min_length=1, max_length=100)
    weight: float = Field(default=1.0, ge=0, le=1e6)
    allowed_models: list[str] = Field(default_factory=list, description="empty: any model of the provider")


class KeyCreate(_In):
    id: Id
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    team_id: Id | None = None
    customer_id: Id | None = None
    user_id: Id | None = None
    profile_id: Id | None = None
    expires_at: Time | None = None
    grants: list[Grant] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)
    mcp_tools: list[str] = Field(default_factory=list)
    mcp_tool_groups: list[str] = Field(default_factory=list)


class KeyUpdate(_In):
    """Only the fields sent change (their defaults here are never applied); `null` clears the
    optional ones (team, customer, user, profile, expiry)."""

    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    team_id: Id | None = None
    customer_id: Id | None = None
    user_id: Id | None = None
    profile_id: Id | None = None
    is_active: bool = True
    expires_at: Time | None = None
    grants: list[Grant] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)
    mcp_tools: list[str] = Field(default_factory=list)
    mcp_tool_groups: list[str] = Field(default_factory=list)


class RotateIn(_In):
    overlap_seconds: int = Field(
        default=3600, ge=0, le=30 * 86400, description="how long the old secret keeps working (0: stops at once)"
    )


class ExpireIn(_In):
    at: Time | None = Field(default=None, description="when the key expires; omitted: now")


class KeyOut(BaseModel):
    id: str
    name: str
    description: str
    key_hint: str = Field(description="the first characters of the secret, to recognise it; never the secret")
    status: Literal["active", "inactive", "expired", "revoked"]
    team_id: str | None
    customer_id: str | None
    user_id: str | None
    profile_id: str | None
    is_active: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime | None
    previous_secret_valid_until: datetime | None = Field(description="end of the overlap after a rotation")
    grants: list[Grant]
    fallbacks: list[str]
    mcp_tools: list[str]
    mcp_tool_groups: list[str]
    source: str


class KeyList(BaseModel):
    items: list[KeyOut]


class KeySecret(BaseModel):
    key: KeyOut
    secret: str = Field(description="shown this once; only its hash is stored")


class ConfigObjectOut(BaseModel):
    kind: str
    id: str
    body: dict[str, Any] = Field(description="the object; secrets appear as their env.NAME reference or '(encrypted)'")
    source: str


class ConfigObjectList(BaseModel):
    items: list[ConfigObjectOut]


class TokenCreate(_In):
    id: Id
    name: str = Field(default="", max_length=200)
    roles: list[Role] = Field(min_length=1)
    teams: list[Id] = Field(default_factory=list, description="teams a team-lead token leads")
    user_id: Id | None = None
    expires_at: Time | None = None


class TokenOut(BaseModel):
    id: str
    name: str
    roles: list[str]
    teams: list[str]
    user_id: str | None
    hint: str
    created_by: str
    expires_at: datetime | None


class TokenList(BaseModel):
    items: list[TokenOut]


class TokenSecret(BaseModel):
    token: TokenOut
    secret: str = Field(description="shown this once; only its hash is stored")


class Me(BaseModel):
    subject: str
    actor: str
    via: str
    roles: list[str]
    teams: list[str]
    user_id: str | None
    email: str | None
    name: str | None


class Paging(_In):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=10_000_000)


class SpendQuery(Paging):
    group_by: Literal["key", "user", "team", "model", "day"] = "key"
    since: Time | None = Field(default=None, description="default: 30 days ago")
    until: Time | None = None
    team: Id | None = None
    key: Id | None = None
    user: Id | None = None
    format: Literal["json", "csv"] = "json"


class SpendRowOut(BaseModel):
    group: str | None
    cost_usd: str = Field(description="exact decimal dollars")
    cost_pico: int
    tokens: int
    requests: int
    guardrail_decisions: int = Field(0, description="guardrail decisions (each an audit event `guardrail`)")
    guarded_requests: int = Field(0, description="requests with at least one guardrail decision")
    guardrail_blocks: int = Field(0, description="requests a guardrail rule blocked")
    agent_cost_usd: str = Field(
        "0", description="what the agents reported spending themselves (OTLP claude_code.cost.usage)"
    )
    agent_cost_pico: int = 0
    agent_tokens: int = Field(
        0,
        description=(
            "tokens the agents reported (OTLP claude_code.token.usage, gemini_cli.token.usage, codex.turn.token_usage)"
        ),
    )


class SigninOut(BaseModel):
    """One gateway sign-in of an agent (auth.gateway_signin)."""

    id: str
    status: Literal["approved", "active", "revoked"]
    surface: str | None = Field(description="what the client said it is (Claude Code: claude_code)")
    virtual_key_id: str | None
    created_at: datetime
    expires_at: datetime = Field(description="the refresh token's end once active")
    revoked_at: datetime | None


class SigninList(BaseModel):
    items: list[SigninOut]


class SpendReport(BaseModel):
    group_by: str
    since: datetime
    until: datetime | None
    rows: list[SpendRowOut]


class RequestQueryIn(Paging):
    since: Time | None = None
    until: Time | None = None
    key: Id | None = None
    team: Id | None = None
    user: Id | None = Field(default=None, description="the Sluice user the key belongs to")
    model: str | None = Field(default=None, max_length=300)
    provider: str | None = Field(default=None, max_length=100)
    decision: Literal["allow", "deny", "error"] | None = None
    status: int | None = Field(default=None, ge=100, le=599)


class RequestOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    request_id: str
    ts: datetime
    path: str
    status: int
    decision: str
    virtual_key_id: str | None
    team_id: str | None
    model: str | None
    cost_pico: int


class RequestPage(BaseModel):
    items: list[RequestOut]
    next_offset: int | None


class AuditQuery(_In):
    since_seq: int = Field(default=1, ge=0, le=2**62)
    kind: str | None = Field(default=None, max_length=40)
    actor: str | None = Field(default=None, max_length=300)
    limit: int = Field(default=100, ge=1, le=1000)


class AuditOut(BaseModel):
    seq: int
    ts: datetime
    kind: str
    actor: str
    data: dict[str, Any]
    key_id: str
    prev_mac: str
    mac: str


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_since_seq: int | None


class EventQuery(_In):
    kind: str | None = Field(default=None, max_length=32)
    object_id: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=100, ge=1, le=1000)


class EventOut(BaseModel):
    ts: datetime
    actor: str
    kind: str
    object_id: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class EventList(BaseModel):
    items: list[EventOut]


class UserOut(BaseModel):
    """A person from the directory (SCIM) or a first sign-in; the SCIM resource's main fields."""

    id: str
    user_name: str | None = None
    display_name: str | None = None
    email: str | None = None
    external_id: str | None = None
    active: bool
    groups: list[str] = Field(default_factory=list)
    signed_in: bool = False  # linked to an identity provider subject by a sign-in
    created: str | None = None
    last_modified: str | None = None


class UserList(BaseModel):
    items: list[UserOut]


class UserDeactivated(BaseModel):
    user: UserOut
    revoked_keys: int
