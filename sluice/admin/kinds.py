"""The kinds of live configuration object, all kept by the one ConfigStore mechanism.

Each kind has a pydantic model (the API's request schema and the declarative file's entry), an
id taken from the model, and a body: the model dumped without defaults, which is what the store
keeps, what events record and what `plan` compares. Secrets inside a body are sealed first
(`sluice.admin.secrets`), so no plain secret is stored, logged in an event or compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sluice.admin.secrets import SEALED, describe, is_sealed, same_secret, seal, seal_url
from sluice.governance.config_sync import body_of
from sluice.settings import (
    OPENAI_COMPATIBLE_VENDORS,
    AccessProfileConfig,
    AliasConfig,
    BudgetConfig,
    CustomerConfig,
    ProviderConfig,
    ProviderType,
    RateLimitConfig,
    RoutingRuleConfig,
    TeamConfig,
    ToolGroupConfig,
    provider_type,
)

NAME = r"^[A-Za-z0-9._-]+$"
# Ids become primary keys and URL segments: at most 200 characters, no control characters.
TEXT_ID = r"^[^\x00-\x1f\x7f]+$"


def _id(limit: int = 200, default: Any = ...) -> Any:
    return Field(default, min_length=1, max_length=limit, pattern=TEXT_ID)


class TeamSpec(TeamConfig):
    id: str = _id()


class CustomerSpec(CustomerConfig):
    id: str = _id()


class BudgetSpec(BudgetConfig):
    id: str = _id()


class RateLimitSpec(RateLimitConfig):
    id: str = _id()


class RoutingRuleSpec(RoutingRuleConfig):
    id: str = _id()


class ToolGroupSpec(ToolGroupConfig):
    name: str = _id()


class AccessProfileSpec(AccessProfileConfig):
    id: str = _id()


class AliasSpec(AliasConfig):
    # The id joins scope, scope id and alias: each short enough for the whole to fit.
    alias: str = _id(90)
    virtual_key_id: str | None = _id(90, None)
    team_id: str | None = _id(90, None)
    customer_id: str | None = _id(90, None)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSpec(_Spec):
    """An upstream provider; its credentials are separate objects (provider keys)."""

    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    type: ProviderType | None = None
    base_url: str | None = None
    # Extra headers sent upstream often carry credentials: write-only, sealed like provider keys.
    headers: dict[str, str] = Field(default_factory=dict, json_schema_extra={"writeOnly": True})
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_byte_timeout_s: float = Field(default=120.0, gt=0)
    read_timeout_s: float = Field(default=300.0, gt=0)
    total_timeout_s: float = Field(default=1800.0, gt=0)

    @model_validator(mode="after")
    def _known_type(self) -> ProviderSpec:
        cfg = ProviderConfig(type=self.type, base_url=self.base_url)
        kind = provider_type(self.name, cfg)
        if kind is None:
            raise ValueError(
                f"provider {self.name!r}: unknown provider; set 'type' to one of "
                "anthropic, openai, openai_compatible, gemini, fake"
            )
        if kind == "openai_compatible" and not self.base_url and self.name not in OPENAI_COMPATIBLE_VENDORS:
            raise ValueError(f"provider {self.name!r}: an openai_compatible provider needs a base_url")
        if kind == "azure" and not self.base_url:
            raise ValueError(f"provider {self.name!r}: azure needs base_url (https://<resource>.openai.azure.com)")
        if kind in ("bedrock", "vertex"):
            # Their region, credentials and model ids are not fields of this object: stored, such
            # a provider could not be built, and every rebuild of the live configuration would fail.
            raise ValueError(f"provider {self.name!r}: {kind} providers are configured in the config file")
        return self


class ProviderKeySpec(_Spec):
    """One credential of a provider. `value` is write-only: a plain secret (encrypted before it
    is stored), an `env.NAME` reference, or an `enc:` value exported earlier."""

    provider: str = Field(min_length=1, max_length=99, pattern=NAME)  # the id `provider:name` fits 200
    name: str = Field(min_length=1, max_length=99, pattern=NAME)
    value: str = Field(min_length=1, json_schema_extra={"writeOnly": True})
    weight: float = Field(default=1.0, ge=0, le=1e6)


class McpServerSpec(_Spec):
    """An upstream MCP server. Values of `env` and `headers` are secrets, stored like provider keys,
    and so is `url` when it carries credentials (user info or a query)."""

    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    transport: Literal["stdio", "http", "sse"]
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, json_schema_extra={"writeOnly": True})
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, json_schema_extra={"writeOnly": True})
    call_timeout_s: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _endpoint(self) -> McpServerSpec:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio server needs 'command'")
        if self.transport != "stdio" and not self.url:
            raise ValueError(f"an {self.transport} server needs 'url'")
        return self


def alias_id(alias: AliasConfig) -> str:
    """Aliases have no id of their own: the alias name within its scope is one."""
    kind, ident = alias.scope
    return alias.alias if kind == "global" else f"{kind}:{ident}:{alias.alias}"


# The secret fields of each kind: (fields holding one secret, fields holding a map of secrets).
# An MCP server's `url` is a secret only when it carries credentials (user info, a query).
SECRET_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "provider_key": (("value",), ()),
    "provider": ((), ("headers",)),
    "mcp_server": (("url",), ("env", "headers")),
}


def _sealer(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    singles, maps = SECRET_FIELDS[kind]

    def sealed(body: dict[str, Any]) -> dict[str, Any]:
        out = dict(body)
        for name in singles:
            if isinstance(out.get(name), str):
                out[name] = seal_url(out[name]) if name == "url" else seal(out[name])
        for name in maps:
            if name in out:
                out[name] = {k: seal(v) for k, v in out[name].items()}
        return out

    return sealed


def _shower(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    singles, maps = SECRET_FIELDS[kind]

    def shown(body: dict[str, Any]) -> dict[str, Any]:
        out = dict(body)
        for name in singles:
            value = out.get(name)
            if isinstance(value, str) and (name != "url" or is_sealed(value)):
                out[name] = describe(value)
        for name in maps:
            if name in out:
                out[name] = {k: describe(v) for k, v in out[name].items()}
        return out

    return shown


def keep_stored_secrets(kind: str, model: BaseModel, current: dict[str, Any] | None) -> BaseModel:
    """A secret given as the store holds it (its plain value, or the `(encrypted)` placeholder an
    export or the API shows) keeps the stored ciphertext, so export-then-plan shows no change."""
    if current is None or kind not in SECRET_FIELDS:
        return model
    singles, maps = SECRET_FIELDS[kind]

    def kept(stored: Any, given: str) -> str:
        if isinstance(stored, str) and (given == SEALED or same_secret(stored, given)):
            return stored
        return given

    update: dict[str, Any] = {}
    for name in singles:
        given = getattr(model, name)
        if isinstance(given, str):
            update[name] = kept(current.get(name), given)
    for name in maps:
        theirs = current.get(name) or {}
        update[name] = {k: kept(theirs.get(k), v) for k, v in getattr(model, name).items()}
    return model.model_copy(update=update)


@dataclass(frozen=True)
class Kind:
    name: str  # the store's kind
    path: str  # the admin API's collection, /api/<path>
    model: type[BaseModel]
    ident: Callable[[Any], str]
    action_write: str = "config.write"
    action_read: str = "config.read"
    seal: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body
    public: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body

    def parse(self, body: dict[str, Any]) -> BaseModel:
        return self.model.model_validate(body)

    def stored_body(self, model: BaseModel) -> dict[str, Any]:
        return self.seal(body_of(model))


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("team", "teams", TeamSpec, lambda m: m.id),
        Kind("customer", "customers", CustomerSpec, lambda m: m.id),
        Kind("budget", "budgets", BudgetSpec, lambda m: m.id, action_write="budgets.write"),
        Kind("rate_limit", "rate-limits", RateLimitSpec, lambda m: m.id),
        Kind(
            "provider",
            "providers",
            ProviderSpec,
            lambda m: m.name,
            seal=_sealer("provider"),
            public=_shower("provider"),
        ),
        Kind(
            "provider_key",
            "provider-keys",
            ProviderKeySpec,
            lambda m: f"{m.provider}:{m.name}",
            seal=_sealer("provider_key"),
            public=_shower("provider_key"),
        ),
        Kind(
            "mcp_server",
            "mcp-servers",
            McpServerSpec,
            lambda m: m.name,
            seal=_sealer("mcp_server"),
            public=_shower("mcp_server"),
        ),
        Kind("tool_group", "tool-groups", ToolGroupSpec, lambda m: m.name),
        Kind("routing_rule", "routing-rules", RoutingRuleSpec, lambda m: m.id),
        Kind("alias", "aliases", AliasSpec, alias_id),
        Kind(
            "access_profile",
            "access-profiles",
            AccessProfileSpec,
            lambda m: m.id,
            action_write="profiles.write",
            action_read="profiles.read",
        ),
    )
}
