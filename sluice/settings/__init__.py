"""The declarative config file: its schema, `env.NAME` references, and loading.

Loading has no side effects beyond reading the file and the environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from sluice.settings.alerts import AlertsConfig, AlertSinkConfig, SoftBudgetConfig, SpendRateConfig
from sluice.settings.audit import AuditConfig, AuditExportConfig, AuditExporterConfig
from sluice.settings.auth import (
    AuthConfig,
    AuthGuardConfig,
    GatewaySigninConfig,
    OidcConfig,
    ScimConfig,
    SessionConfig,
)
from sluice.settings.base import ConfigError, _Strict
from sluice.settings.governance import (
    AccessProfileConfig,
    BudgetConfig,
    CustomerConfig,
    GovernanceConfig,
    RateLimitConfig,
    TeamConfig,
    VirtualKeyConfig,
)
from sluice.settings.guardrails import GuardrailRuleConfig, GuardrailsConfig, GuardrailSetConfig
from sluice.settings.mcp import McpAccess, McpConfig, McpServerConfig, ToolGroupConfig, ToolRateLimitConfig
from sluice.settings.observability import AgentTelemetryConfig, MetricsConfig, ObservabilityConfig, TracingConfig
from sluice.settings.pricing import ModelPrice, PricingConfig
from sluice.settings.providers import (
    CLOUD_CREDENTIAL_FIELDS,
    DEFAULT_BASE_URLS,
    OPENAI_COMPATIBLE_VENDORS,
    PROVIDER_TYPES,
    ProviderConfig,
    ProviderKeyConfig,
    ProviderType,
    provider_type,
)
from sluice.settings.retention import RetentionConfig
from sluice.settings.routing import AliasConfig, CircuitBreakerConfig, RetryConfig, RoutingConfig, RoutingRuleConfig
from sluice.settings.session_caps import ProfileSessionCap
from sluice.settings.sessions_control import KillSwitchConfig, RunawayConfig, SessionCapConfig

__all__ = [
    "CLOUD_CREDENTIAL_FIELDS",
    "DEFAULT_BASE_URLS",
    "OPENAI_COMPATIBLE_VENDORS",
    "PROVIDER_TYPES",
    "AccessProfileConfig",
    "AgentTelemetryConfig",
    "AlertSinkConfig",
    "AlertsConfig",
    "AliasConfig",
    "AuditConfig",
    "AuditExportConfig",
    "AuditExporterConfig",
    "AuthConfig",
    "AuthGuardConfig",
    "BudgetConfig",
    "CircuitBreakerConfig",
    "ConfigError",
    "CustomerConfig",
    "GatewaySigninConfig",
    "GovernanceConfig",
    "GuardrailRuleConfig",
    "GuardrailSetConfig",
    "GuardrailsConfig",
    "KillSwitchConfig",
    "McpAccess",
    "McpConfig",
    "McpServerConfig",
    "MetricsConfig",
    "ModelPrice",
    "ObservabilityConfig",
    "OidcConfig",
    "PricingConfig",
    "ProfileSessionCap",
    "ProviderConfig",
    "ProviderKeyConfig",
    "ProviderType",
    "RateLimitConfig",
    "RequestLogConfig",
    "RetentionConfig",
    "RetryConfig",
    "RoutingConfig",
    "RoutingRuleConfig",
    "RunawayConfig",
    "ScimConfig",
    "ServerConfig",
    "SessionCapConfig",
    "SessionConfig",
    "SluiceConfig",
    "SoftBudgetConfig",
    "SpendRateConfig",
    "StoreConfig",
    "TeamConfig",
    "ToolGroupConfig",
    "ToolRateLimitConfig",
    "TracingConfig",
    "VirtualKeyConfig",
    "load_config",
    "parse_config",
    "provider_type",
]

log = logging.getLogger("sluice.settings")

_ENV_REF = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Processes serving the port (SO_REUSEPORT); more than one needs governance.backend: redis.
    workers: int = Field(default=1, ge=1, le=256)
    # On SIGTERM: how long requests in flight (streams) may take to finish before they are cut.
    drain_seconds: float = Field(default=30, ge=0, le=3600)


class StoreConfig(_Strict):
    url: str = "sqlite+aiosqlite:///sluice.db"
    # How long a write nobody waits for (request-log rows, the spend of keys without limits)
    # waits for company before it is committed: a commit costs about as much whatever it holds.
    # Read at start (as `url` is).
    linger_ms: float = Field(default=50, ge=0, le=1000)


class RequestLogConfig(_Strict):
    queue_size: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    spill_path: str = "sluice-requestlog.spill.jsonl"


class SluiceConfig(_Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    virtual_keys: list[VirtualKeyConfig] = Field(default_factory=list)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    teams: list[TeamConfig] = Field(default_factory=list)
    customers: list[CustomerConfig] = Field(default_factory=list)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    rate_limits: list[RateLimitConfig] = Field(default_factory=list)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    # Off unless the config has a `guardrails:` section (which is then on, with the standard set,
    # unless it says `enabled: false`): the default set costs CPU on every request (docs/guardrails.md).
    guardrails: GuardrailsConfig = Field(default_factory=lambda: GuardrailsConfig(enabled=False))
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    access_profiles: list[AccessProfileConfig] = Field(default_factory=list)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    # Session caps, runaway detection and the kill switch (docs/sessions-control.md).
    session_caps: list[SessionCapConfig] = Field(default_factory=list)
    runaway: list[RunawayConfig] = Field(default_factory=list)
    kill_switch: KillSwitchConfig = Field(default_factory=KillSwitchConfig)

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
            ("session cap", self.session_caps),
            ("runaway rule", self.runaway),
        ):
            ids: set[str] = set()
            for item in items:
                if item.id in ids:
                    raise ValueError(f"{what} id {item.id!r} appears twice")
                ids.add(item.id)
        return self

    @model_validator(mode="after")
    def _alerts_need_the_audit_log(self) -> SluiceConfig:
        # Alerts are records of the audit log, delivered by its outbox: without the log, nothing is durable.
        if self.alerts.enabled and not self.audit.enabled:
            raise ValueError("alerts need the audit log (audit.hmac_key): they are delivered through its outbox")
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
        for rule in (*self.budgets, *self.rate_limits, *self.session_caps):
            kind, ident = rule.scope
            if ident not in known[kind]:
                out.append(f"{rule.id!r} is attached to {kind} {ident!r}, which this file does not declare")
        budget_ids = {b.id for b in self.budgets}
        for alert in self.alerts.budgets:
            if alert.budget_id not in budget_ids:
                out.append(
                    f"alerts.budgets: budget {alert.budget_id!r} is not declared in this file (it must be in the store)"
                )
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
