"""The declarative config file: its schema, `env.NAME` references, and loading.

Loading has no side effects beyond reading the file and the environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger("sluice.settings")

_ENV_REF = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")

ProviderType = Literal["anthropic", "openai", "openai_compatible", "gemini", "azure", "bedrock", "vertex", "fake"]
PROVIDER_TYPES = "anthropic, openai, openai_compatible, gemini, azure, bedrock, vertex, fake"
# Credential fields of the cloud providers that, like `keys`, may name an unset variable: the
# provider then loads without that credential and answers 503 until it is set.
CLOUD_CREDENTIAL_FIELDS = ("access_key_id", "secret_access_key", "session_token", "credentials")

# OpenAI-compatible vendors are data: a name and a default base URL.
OPENAI_COMPATIBLE_VENDORS: dict[str, str] = {
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
}
DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "gemini": "https://generativelanguage.googleapis.com",
    **OPENAI_COMPATIBLE_VENDORS,
}


class ConfigError(ValueError):
    """The config file cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderKeyConfig(_Strict):
    name: str
    value: SecretStr
    weight: float = Field(default=1.0, ge=0)


class ProviderConfig(_Strict):
    type: ProviderType | None = None
    base_url: str | None = None
    keys: list[ProviderKeyConfig] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_byte_timeout_s: float = Field(default=120.0, gt=0)  # until the first byte of the answer
    read_timeout_s: float = Field(default=300.0, gt=0)  # longest silence between two pieces of a stream
    total_timeout_s: float = Field(default=1800.0, gt=0)  # the whole exchange
    # Cloud providers (docs/providers.md). The provider's own id for a model, by the name callers
    # use, so one model name can be split between e.g. `anthropic` and `bedrock`.
    models: dict[str, str] = Field(default_factory=dict)  # bedrock, vertex
    deployments: dict[str, str] = Field(default_factory=dict)  # azure: model -> deployment name
    api_version: str | None = None  # azure: a dated version for deployment URLs; unset or "v1": the v1 API
    auth: Literal["api_key", "bearer"] = "api_key"  # azure: `api-key` header, or an Entra ID bearer token
    region: str | None = None  # bedrock (us-east-1), vertex (us-east5, global)
    access_key_id: SecretStr | None = None  # bedrock SigV4 credentials
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    project: str | None = None  # vertex; defaults to the service account's project_id
    credentials: SecretStr | None = None  # vertex: service-account JSON, inline or a file path


class ProviderAccess(_Strict):
    provider: str
    weight: float = Field(default=1.0, ge=0)
    allowed_models: list[str] = Field(default_factory=list)


class McpAccess(_Strict):
    """What of the MCP servers a key or team may see and use: tool groups, and patterns
    `server/name` (shell-style wildcards allowed, e.g. `server/*`) for tools, resources (by the
    upstream URI) and prompts."""

    tool_groups: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)


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


class ModelPrice(_Strict):
    input_cost_per_mtok: Decimal = Decimal(0)
    output_cost_per_mtok: Decimal = Decimal(0)
    cache_read_input_cost_per_mtok: Decimal | None = None
    cache_write_input_cost_per_mtok: Decimal | None = None


class TeamConfig(_Strict):
    id: str = Field(min_length=1)
    name: str = ""
    customer_id: str | None = None
    mcp: McpAccess | None = None  # added to what each member key may use


class CustomerConfig(_Strict):
    id: str = Field(min_length=1)
    name: str = ""


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        from sluice.core.windows import Duration

        Duration.parse(value)
    return value


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
    # Output tokens reserved for a request that names no max_tokens.
    default_max_tokens: int = Field(default=4096, gt=0)


# Variables a routing rule may use (docs/routing.md describes each).
RULE_VARIABLES = frozenset({"request", "key", "time", "budget_used", "tokens_used"})


class _MaybeScoped(_Strict):
    """Attached to at most one of a virtual key, a team or a customer; none means everyone."""

    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None

    @model_validator(mode="after")
    def _at_most_one_scope(self) -> _MaybeScoped:
        if sum(x is not None for x in (self.virtual_key_id, self.team_id, self.customer_id)) > 1:
            raise ValueError("give at most one of virtual_key_id, team_id, customer_id")
        return self

    @property
    def scope(self) -> tuple[str, str]:
        for kind, value in (
            ("virtual_key", self.virtual_key_id),
            ("team", self.team_id),
            ("customer", self.customer_id),
        ):
            if value is not None:
                return kind, value
        return "global", ""


class AliasConfig(_MaybeScoped):
    alias: str = Field(min_length=1)
    target: str = Field(min_length=1)


class RouteTarget(_Strict):
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)


class RoutingRuleConfig(_MaybeScoped):
    id: str = Field(min_length=1)
    when: str = "true"  # a CEL expression
    models: list[str] = Field(default_factory=list)  # only for these requested models (fast pre-filter)
    target: str | None = None
    targets: list[RouteTarget] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)

    @field_validator("when")
    @classmethod
    def _compiles(cls, expr: str) -> str:
        import cel

        try:
            program = cel.compile(expr)
        except ValueError as exc:
            raise ValueError(f"invalid CEL expression: {exc}") from None
        unknown = set(program.variables()) - RULE_VARIABLES
        if unknown:
            raise ValueError(
                f"unknown variable(s) {', '.join(sorted(unknown))} in {expr!r}; "
                f"rules may use {', '.join(sorted(RULE_VARIABLES))}"
            )
        return expr

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> RoutingRuleConfig:
        if (self.target is None) == (not self.targets):
            raise ValueError(f"routing rule {self.id!r} needs either 'target' or 'targets'")
        return self


class RetryConfig(_Strict):
    attempts: int = Field(default=2, ge=1, le=10)  # tries per target, the first included
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)


class CircuitBreakerConfig(_Strict):
    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=30.0, gt=0)


class RoutingConfig(_Strict):
    aliases: list[AliasConfig] = Field(default_factory=list)
    rules: list[RoutingRuleConfig] = Field(default_factory=list)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)


class AuditExporterConfig(_Strict):
    name: str = Field(min_length=1)
    type: Literal["webhook", "splunk_hec", "datadog", "elasticsearch", "otlp"]
    url: str
    secret: SecretStr | None = None  # webhook: signs the body
    token: SecretStr | None = None  # splunk_hec
    api_key: SecretStr | None = None  # datadog, elasticsearch
    username: str | None = None  # elasticsearch basic auth
    password: SecretStr | None = None
    index: str | None = None  # splunk_hec, elasticsearch
    tags: str = ""  # datadog
    headers: dict[str, str] = Field(default_factory=dict)  # webhook, otlp
    batch_size: int = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _credentials(self) -> AuditExporterConfig:
        needs = {"webhook": "secret", "splunk_hec": "token", "datadog": "api_key", "elasticsearch": "index"}
        field_name = needs.get(self.type)
        if field_name and getattr(self, field_name) is None:
            raise ValueError(f"audit exporter {self.name!r} ({self.type}) needs '{field_name}'")
        return self


class AuditExportConfig(_Strict):
    poll_interval_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    # A batch that failed this many times in a row is set aside as a dead letter, so one poison
    # batch cannot stop the export.
    max_failures: int = Field(default=20, ge=1)


class ContentCaptureConfig(_Strict):
    """Whose prompts and answers go into the audit log (secrets redacted first). Nobody's by default."""

    virtual_keys: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=65_536, ge=256)


class AuditConfig(_Strict):
    # The key that seals new records, and its id (recorded in each record, so keys can rotate).
    hmac_key: SecretStr | None = None
    key_id: str = "k1"
    # Keys of earlier ids, still needed to verify the records they sealed.
    previous_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # A request whose audit record cannot be made durable is not served (the default, as the most
    # trusted secret stores do); false serves it anyway and logs the failure.
    refuse_unrecorded: bool = True
    # Signed checkpoints of the chain head (Ed25519), kept apart from the log, reveal truncation.
    checkpoint_key: SecretStr | None = None  # base64 Ed25519 seed (`sluice audit keygen`)
    checkpoint_public_key: str | None = None  # for verification
    checkpoint_path: str | None = None
    checkpoint_every_records: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: float = Field(default=60.0, gt=0)
    capture_content: ContentCaptureConfig = Field(default_factory=ContentCaptureConfig)
    # `sluice audit prune` removes records older than this (the chain stays verifiable).
    retention_days: int | None = Field(default=None, ge=1)
    exporters: list[AuditExporterConfig] = Field(default_factory=list)
    export: AuditExportConfig = Field(default_factory=AuditExportConfig)

    @property
    def enabled(self) -> bool:
        return self.hmac_key is not None

    def keys(self) -> dict[str, bytes]:
        found = {kid: k.get_secret_value().encode() for kid, k in self.previous_keys.items()}
        if self.hmac_key is not None:
            found[self.key_id] = self.hmac_key.get_secret_value().encode()
        return found


class McpServerConfig(_Strict):
    # No `__` in a name: exposed names are split on the first `__` (server__tool).
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*$")
    transport: Literal["stdio", "http", "sse"]
    command: str | None = None  # stdio
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict)  # credentials stay in the gateway
    cwd: str | None = None
    url: str | None = None  # http, sse
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    # Per server, so one slow or dead server cannot hold up the others: how long starting may take,
    # how long a listing waits for a server that is still starting, and how long one call may take.
    start_timeout_s: float = Field(default=30.0, gt=0)
    list_timeout_s: float = Field(default=5.0, gt=0)
    call_timeout_s: float = Field(default=120.0, gt=0)
    health_interval_s: float = Field(default=15.0, gt=0)  # ping a started server this often

    @model_validator(mode="after")
    def _endpoint(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"MCP server {self.name!r}: a stdio server needs 'command'")
        if self.transport != "stdio" and not self.url:
            raise ValueError(f"MCP server {self.name!r}: an {self.transport} server needs 'url'")
        return self


class ToolGroupConfig(_Strict):
    name: str = Field(min_length=1)
    tools: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)


class ToolRateLimitConfig(_Strict):
    """At most `max_calls` calls per window for each key and each tool matching `tools`."""

    id: str = Field(min_length=1)
    tools: list[str] = Field(min_length=1)  # `server/tool` patterns
    max_calls: int = Field(gt=0)
    reset_duration: str

    @field_validator("reset_duration")
    @classmethod
    def _fixed(cls, value: str) -> str:
        from sluice.core.windows import Duration

        if Duration.parse(value).seconds is None:
            raise ValueError("a tool rate limit needs a fixed window (s, m, h, d or w)")
        return value


class McpConfig(_Strict):
    servers: list[McpServerConfig] = Field(default_factory=list)
    tool_groups: list[ToolGroupConfig] = Field(default_factory=list)
    rate_limits: list[ToolRateLimitConfig] = Field(default_factory=list)
    # Also serve the older HTTP+SSE transport (GET /sse, POST /messages) for clients that need it.
    sse_transport: bool = True

    @model_validator(mode="after")
    def _unique_servers(self) -> McpConfig:
        names = [s.name for s in self.servers]
        if len(names) != len(set(names)):
            raise ValueError("MCP server names must be unique")
        return self


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


# The admin roles (the same vocabulary as sluice.auth.principal.Role, which sits above settings).
AdminRole = Literal["admin", "security-auditor", "team-lead", "developer", "viewer"]


class OidcConfig(_Strict):
    """Admin and developer sign-in with an OpenID Connect provider (docs/sso-scim.md)."""

    issuer: str = Field(min_length=1)  # exactly as the provider's discovery document states it
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None  # none: a public client, PKCE alone
    # How the secret goes to the token endpoint (RFC 6749 2.3.1: basic is what every server takes).
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    redirect_uri: str = Field(min_length=1)  # https://<gateway>/auth/callback, registered at the IdP
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    # Accepted `aud` of Bearer access tokens on the API, besides client_id (Okta's custom
    # authorization server: api://default; Entra: api://<application id>).
    audiences: list[str] = Field(default_factory=list)
    # Where the claims are; dotted paths reach into objects (Keycloak: realm_access.roles).
    groups_claim: str = "groups"
    email_claim: str = "email"
    username_claim: str = "email"  # matched to a SCIM user's userName (Entra: preferred_username)
    name_claim: str = "name"
    role_mapping: dict[str, list[AdminRole]] = Field(default_factory=dict)  # group -> roles
    default_roles: list[AdminRole] = Field(default_factory=list)  # everyone who signs in
    # group -> ids of the teams its members lead (a team-lead manages those teams' keys, budgets
    # and spend); matched like role_mapping, against the token's groups and SCIM groups.
    team_mapping: dict[str, list[str]] = Field(default_factory=dict)
    clock_skew_s: int = Field(default=60, ge=0, le=600)
    # An unknown `kid` refetches the JWKS (key rotation), at most this often.
    jwks_refetch_min_s: float = Field(default=30.0, ge=0)
    jwks_ttl_s: float = Field(default=3600.0, gt=0)
    jit_provisioning: bool = True  # first sign-in creates the user when SCIM has not
    allowed_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
    )


class SessionConfig(_Strict):
    # Signs the session cookie; unset, a random one per process (sessions end with a restart).
    secret: SecretStr | None = None
    ttl_s: int = Field(default=8 * 3600, gt=0)
    cookie_name: str = "sluice_session"
    secure_cookie: bool = True  # false only for plain-HTTP development on 127.0.0.1


class ScimConfig(_Strict):
    # sha256 hex digests of the SCIM bearer tokens (several while rotating); the tokens themselves
    # stay in the IdP.
    token_sha256: list[str] = Field(min_length=1)

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, values: list[str]) -> list[str]:
        for v in values:
            if not re.fullmatch(r"[0-9a-f]{64}", v):
                raise ValueError("each token_sha256 is the 64-character lowercase hex sha256 of a token")
        return values


class AuthConfig(_Strict):
    oidc: OidcConfig | None = None
    session: SessionConfig = Field(default_factory=SessionConfig)
    scim: ScimConfig | None = None
    # The access profile of people no profile's groups match (none: they get no key).
    default_profile: str | None = None


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class StoreConfig(_Strict):
    url: str = "sqlite+aiosqlite:///sluice.db"


class RequestLogConfig(_Strict):
    queue_size: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    spill_path: str = "sluice-requestlog.spill.jsonl"


class SluiceConfig(_Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    virtual_keys: list[VirtualKeyConfig] = Field(default_factory=list)
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    teams: list[TeamConfig] = Field(default_factory=list)
    customers: list[CustomerConfig] = Field(default_factory=list)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    rate_limits: list[RateLimitConfig] = Field(default_factory=list)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    access_profiles: list[AccessProfileConfig] = Field(default_factory=list)
    auth: AuthConfig = Field(default_factory=AuthConfig)

    @field_validator("providers")
    @classmethod
    def _known_provider_types(cls, providers: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name, cfg in providers.items():
            kind = provider_type(name, cfg)
            if kind is None:
                raise ValueError(f"provider {name!r}: unknown provider; set 'type' to one of {PROVIDER_TYPES}")
            if kind == "openai_compatible" and not (cfg.base_url or name in OPENAI_COMPATIBLE_VENDORS):
                raise ValueError(f"provider {name!r}: an openai_compatible provider needs a base_url")
            if kind == "azure" and not cfg.base_url:
                raise ValueError(f"provider {name!r}: azure needs base_url (https://<resource>.openai.azure.com)")
            if kind in ("bedrock", "vertex") and not cfg.region:
                raise ValueError(f"provider {name!r}: {kind} needs a region")
        return providers

    @model_validator(mode="after")
    def _unique_ids(self) -> SluiceConfig:
        for what, items in (
            ("virtual key", self.virtual_keys),
            ("team", self.teams),
            ("customer", self.customers),
            ("budget", self.budgets),
            ("rate limit", self.rate_limits),
            ("access profile", self.access_profiles),
        ):
            ids: set[str] = set()
            for item in items:
                if item.id in ids:
                    raise ValueError(f"{what} id {item.id!r} appears twice")
                ids.add(item.id)
        return self

    def warnings(self) -> list[str]:
        """Things that load but will not work until fixed, for `sluice config validate`."""
        out = []
        for vk in self.virtual_keys:
            for access in vk.provider_configs:
                if access.provider not in self.providers and access.provider != "fake":
                    out.append(
                        f"virtual key {vk.id!r}: provider {access.provider!r} is not configured under "
                        "'providers'; requests routed to it answer 503 until it is"
                    )
        known = {
            "virtual_key": {vk.id for vk in self.virtual_keys},
            "team": {t.id for t in self.teams},
            "customer": {c.id for c in self.customers},
        }
        for rule in (*self.budgets, *self.rate_limits):
            kind, ident = rule.scope
            if ident not in known[kind]:
                out.append(f"{rule.id!r} is attached to {kind} {ident!r}, which this file does not declare")
        profiles = {p.id for p in self.access_profiles}
        if self.auth.default_profile is not None and self.auth.default_profile not in profiles:
            out.append(f"auth.default_profile {self.auth.default_profile!r} is not among access_profiles")
        for profile in self.access_profiles:
            for access in profile.provider_configs:
                if access.provider not in self.providers and access.provider != "fake":
                    out.append(f"access profile {profile.id!r}: provider {access.provider!r} is not configured")
        for name, cfg in self.providers.items():
            ptype = provider_type(name, cfg)
            if ptype in ("anthropic", "openai", "gemini", "azure") and not cfg.keys:
                out.append(f"provider {name!r} has no keys; requests routed to it answer 503")
            if ptype == "bedrock" and not cfg.keys and not (cfg.access_key_id and cfg.secret_access_key):
                out.append(f"provider {name!r} has no AWS credentials or API key; requests routed to it answer 503")
            if ptype == "vertex" and cfg.credentials is None:
                out.append(f"provider {name!r} has no service-account credentials; requests routed to it answer 503")
        return out


def provider_type(name: str, cfg: ProviderConfig) -> ProviderType | None:
    if cfg.type is not None:
        return cfg.type
    if name in ("anthropic", "openai", "gemini", "azure", "bedrock", "vertex", "fake"):
        return name  # type: ignore[return-value]
    if name in OPENAI_COMPATIBLE_VENDORS:
        return "openai_compatible"
    return None


class _Missing:
    def __init__(self, var: str) -> None:
        self.var = var


def _resolve_env(node: Any, path: str, missing: list[tuple[str, str]]) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_env(v, f"{path}.{k}" if path else str(k), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_env(v, f"{path}[{i}]", missing) for i, v in enumerate(node)]
    if isinstance(node, str):
        m = _ENV_REF.match(node)
        if m:
            value = os.environ.get(m.group(1))
            if value is None or value == "":
                missing.append((path, m.group(1)))
                return _Missing(m.group(1))
            return value
    return node


def _drop_provider_keys_without_env(doc: dict[str, Any]) -> None:
    """A provider key whose `env.NAME` is unset is left out, so one demo config serves with and
    without real credentials; the provider then answers 503 until a key is configured."""
    providers = doc.get("providers")
    if not isinstance(providers, dict):
        return
    for name, cfg in providers.items():
        if not isinstance(cfg, dict) or not isinstance(cfg.get("keys"), list):
            continue
        kept = [k for k in cfg["keys"] if not (isinstance(k, dict) and isinstance(k.get("value"), _Missing))]
        for dropped in cfg["keys"]:
            if dropped not in kept:
                log.warning(
                    "provider %s: key %s skipped, environment variable %s is not set",
                    name,
                    dropped.get("name", "?"),
                    dropped["value"].var,
                )
        cfg["keys"] = kept
    for name, cfg in providers.items():
        for field_name in CLOUD_CREDENTIAL_FIELDS:
            if isinstance(cfg, dict) and isinstance(cfg.get(field_name), _Missing):
                log.warning(
                    "provider %s: %s left unset, environment variable %s is not set",
                    name,
                    field_name,
                    cfg[field_name].var,
                )
                cfg[field_name] = None


def _optional_credential(path: str) -> bool:
    parts = path.split(".")
    if parts[0] != "providers" or len(parts) < 3:
        return False
    return ".keys[" in path or (len(parts) == 3 and parts[2] in CLOUD_CREDENTIAL_FIELDS)


def parse_config(doc: Any, *, source: str = "<config>") -> SluiceConfig:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the config must be a mapping at the top level")
    missing: list[tuple[str, str]] = []
    resolved = _resolve_env(doc, "", missing)
    _drop_provider_keys_without_env(resolved)
    still_missing = [(p, v) for p, v in missing if not _optional_credential(p)]
    if still_missing:
        where = "; ".join(f"{p} needs environment variable {v}" for p, v in still_missing)
        raise ConfigError(f"{source}: {where}")
    try:
        return SluiceConfig.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling or the config reference (docs/configuration.md)"
        lines.append(f"  {loc}: {msg}")
    return f"{source}: invalid config\n" + "\n".join(lines)


def load_config(path: str | Path) -> SluiceConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    try:
        doc = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    return parse_config(doc, source=str(p))
