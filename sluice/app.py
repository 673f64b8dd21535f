"""Composition root: builds and wires every service from the settings. The only module that
chooses storage backends."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sluice.admin.live import LiveConfig
from sluice.admin.service import AdminService, record_changes
from sluice.alerts.monitor import Alerts
from sluice.audit import checkpoints
from sluice.audit.auth_failures import AuthGuard
from sluice.audit.log import AuditLog
from sluice.audit.outbox import AuditExport
from sluice.audit.recorder import RequestRecorder
from sluice.audit.retention import Retention
from sluice.auth.admin_tokens import ApiTokenAuthenticator, BootstrapAuthenticator
from sluice.auth.identity import Identity, build_identity
from sluice.auth.principal import Authenticator
from sluice.core.tasks import cancel, spawn
from sluice.engine import Engine
from sluice.governance.config_sync import sync_from_file
from sluice.governance.keys import KeyCache, generate_secret, hash_secret, hint_of
from sluice.governance.limits import Limits
from sluice.governance.profiles import ProfileBook
from sluice.governance.refresh import VersionWatch
from sluice.guardrails.service import Guardrails
from sluice.mcp.gateway import McpGateway
from sluice.observability.agent_forward import AgentForwarder
from sluice.observability.observer import build_observer
from sluice.pricing.table import PriceTable
from sluice.providers.base import Provider
from sluice.providers.registry import build_providers
from sluice.sessions.runaway import Runaway
from sluice.sessions.stops import Stops
from sluice.settings import SluiceConfig, VirtualKeyConfig, provider_type
from sluice.storage.backends.memory_counters import MemoryCounters
from sluice.storage.backends.sql import SqlStore
from sluice.storage.ports import LimitCounters, SharedSpendRates, Store
from sluice.storage.records import ProviderGrant, VirtualKey
from sluice.upstream.client import UpstreamClient

log = logging.getLogger("sluice.app")


def open_store(url: str, *, linger_s: float = 0.0) -> Store:
    return SqlStore(url, linger_s=linger_s)


def open_retention(services: Services) -> Retention:
    """Retention of content, request log and audit records over the services' store."""
    from sluice.storage.backends.sql_retention import SqlRetention

    assert isinstance(services.store, SqlStore), "retention needs the SQL store"
    return Retention(services.config, services.store, SqlRetention(services.store), services.audit)


def open_counters(config: SluiceConfig) -> LimitCounters:
    if config.governance.backend == "redis":
        from sluice.storage.backends.redis_counters import RedisCounters

        return RedisCounters(config.governance.redis_url)
    return MemoryCounters()


def offline_limits(config: SluiceConfig, store: Store) -> Limits:
    """Limits that read settled spend from the ledger only (for tools that run beside a gateway)."""
    return Limits(config.governance, MemoryCounters(), store)


def key_from_config(cfg: VirtualKeyConfig, secret: str) -> VirtualKey:
    return VirtualKey(
        id=cfg.id,
        name=cfg.name or cfg.id,
        description=cfg.description,
        key_hash=hash_secret(secret),
        key_hint=hint_of(secret),
        grants=tuple(ProviderGrant(p.provider, p.weight, tuple(p.allowed_models)) for p in cfg.provider_configs),
        team_id=cfg.team_id,
        customer_id=cfg.customer_id,
        is_active=cfg.is_active,
        expires_at=cfg.expires_at,
        source="config",
        fallbacks=tuple(cfg.fallbacks),
        mcp_tools=tuple(cfg.mcp.tools) if cfg.mcp else (),
        mcp_tool_groups=tuple(cfg.mcp.tool_groups) if cfg.mcp else (),
        mcp_resources=tuple(cfg.mcp.resources) if cfg.mcp else (),
        mcp_prompts=tuple(cfg.mcp.prompts) if cfg.mcp else (),
    )


async def seed_virtual_keys(store: Store, config: SluiceConfig) -> dict[str, str]:
    """Writes the config's virtual keys to the store. Returns the secrets generated for keys
    that had no `value` and were new, so they can be shown once."""
    generated: dict[str, str] = {}
    for cfg in config.virtual_keys:
        if cfg.value is not None:
            await store.seed_config_key(key_from_config(cfg, cfg.value.get_secret_value()), replace_secret=True)
            continue
        secret = generate_secret()
        if await store.seed_config_key(key_from_config(cfg, secret), replace_secret=False):
            generated[cfg.id] = secret
    return generated


@dataclass
class Services:
    config: SluiceConfig
    store: Store
    client: UpstreamClient
    providers: dict[str, Provider]
    keys: KeyCache
    recorder: RequestRecorder
    audit: AuditLog
    export: AuditExport
    mcp: McpGateway
    limits: Limits
    engine: Engine
    profiles: ProfileBook
    identity: Identity
    live: LiveConfig
    admin: AdminService
    # How admin API callers prove who they are, tried in order: identity providers go in front.
    authenticators: list[Authenticator] = field(default_factory=list)
    guard: AuthGuard | None = None  # authentication failures: throttle and counted audit records
    alerts: Alerts | None = None  # budget, spend-rate and provider alerts (sluice.alerts)
    stops: Stops | None = None  # the kill switch (sluice.sessions.stops)
    # Signed-in agents' OTLP, sent on to the collector (observability.agent_telemetry.forward)
    agent_forward: AgentForwarder | None = None
    generated_secrets: dict[str, str] = field(default_factory=dict)
    config_actor: str = "config-file"
    _retention: asyncio.Task[None] | None = None
    _data_retention: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.migrate()
        self.generated_secrets = await seed_virtual_keys(self.store, self.config)
        await record_changes(self.audit, await sync_from_file(self.store, self.config, self.config_actor))
        await self.profiles.start()  # before the keys, which derive from profiles
        await self.keys.start()
        await self.live.start()  # before the MCP gateway, so it connects the store's servers too
        await self.mcp.start()
        await self.limits.start()
        if self.stops is not None:
            await self.stops.start()  # before serving: a stop thrown while this replica was down holds
        await self.recorder.start()
        await self.client.start()
        if self.identity.gateway is not None:
            await self.identity.gateway.start()
        if self.agent_forward is not None:
            self.agent_forward.start()
        self.export.start()
        if self.alerts is not None:
            self.alerts.start()
        if self.engine.runaway is not None:
            self.engine.runaway.start()  # redoes the detections a dead process left half done
        if self.guard is not None:
            self.guard.start()
        if self.config.audit.enabled and self.config.audit.retention_days:
            self._retention = spawn(self.audit.retention_loop(self.config.audit.retention_days), name="audit-retention")
        if self.config.retention.active:
            self._data_retention = spawn(open_retention(self).loop(), name="data-retention")

    async def reload_file(self, config: SluiceConfig, actor: str) -> int:
        """Applies a re-read config file: keys, governance objects, providers, routing and MCP
        (server settings such as the port need a restart). Returns the number of changes recorded."""
        await seed_virtual_keys(self.store, config)
        events = await sync_from_file(self.store, config, actor)
        await record_changes(self.audit, events)
        if self.engine.guardrails is not None:  # the rule sets, rebuilt (the sessions' vaults kept)
            self.engine.guardrails.reconfigure(config.guardrails)
        await self.live.rebase(config)
        return len(events)

    async def stop(self) -> None:
        await cancel(self._retention)
        await cancel(self._data_retention)
        await self.live.stop()
        await self.mcp.stop()
        if self.alerts is not None:
            await self.alerts.stop()
        if self.engine.runaway is not None:
            await self.engine.runaway.stop()
        await self.export.stop()
        await self.limits.stop()
        if self.stops is not None:
            await self.stops.stop()
        if self.guard is not None:
            await self.guard.stop()
        if self.identity.gateway is not None:
            await self.identity.gateway.stop()
        if self.agent_forward is not None:
            await self.agent_forward.stop()
        await self.audit.drain()
        await self.recorder.stop()
        await self.keys.stop()
        await self.profiles.stop()
        await self.client.close()
        if self.engine.observer.tracer is not None:
            self.engine.observer.tracer.shutdown()
        await self.store.close()


def build_services(config: SluiceConfig, *, store_url: str | None = None) -> Services:
    store = open_store(store_url or config.store.url, linger_s=config.store.linger_ms / 1000)
    client = UpstreamClient()
    providers = build_providers(config, client)
    # Profiles, limits and the live config all follow config_version: one read a second serves them.
    config_watch = VersionWatch("config", store.config_version)
    profiles = ProfileBook(store, watch=config_watch)
    keys = KeyCache(store, profiles=profiles)
    recorder = RequestRecorder(
        store,
        queue_size=config.request_log.queue_size,
        batch_size=config.request_log.batch_size,
        spill_path=config.request_log.spill_path,
    )
    counters = open_counters(config)
    limits = Limits(config.governance, counters, store, watch=config_watch, linger_s=config.store.linger_ms / 1000)
    audit = AuditLog(checkpoints.with_defaults(config.audit, store_url or config.store.url), store)
    engine = Engine(
        keys,
        providers,
        PriceTable.bundled(config.pricing, aliases=deployment_models(config)),
        recorder,
        limits,
        routing=config.routing,
        audit=audit,
        default_max_tokens=config.governance.default_max_tokens,
        stream_blocks=config.governance.stream_reservation == "block",
    )
    export = AuditExport(config.audit.exporters, config.audit.export, store, client)
    mcp = McpGateway(config.mcp, keys, audit, store)
    engine.session_tools = mcp.session_calls.take
    engine.observer = build_observer(config.observability)
    if engine.observer.mcp is not None:
        mcp.observe = engine.observer.mcp.observe
    guard = AuthGuard(config.auth.guard, audit)
    engine.guard = guard
    engine.guardrails = mcp.guardrails = Guardrails(config.guardrails)
    identity = build_identity(config.auth, store, client, profiles, audit, keys.reload)
    live = LiveConfig(config, store, engine, mcp, client, watch=config_watch)
    admin = AdminService(store, audit, keys=keys, limits=limits, live=live, profiles=profiles)
    # Identity providers first: a JWT is theirs to check; opaque tokens fall through to ours.
    authenticators: list[Authenticator] = [
        *identity.authenticators,
        BootstrapAuthenticator(store),
        ApiTokenAuthenticator(store),
    ]
    alerts = Alerts(config.alerts, config.audit.export, audit, store, client, limits, lambda: engine.breakers)
    engine.guardrails.alerts = alerts.fire  # the `alert` action (off when alerts are: fire sends nothing)
    engine.stops = stops = Stops(store, audit, interval=config.kill_switch.poll_interval_s)
    if config.runaway:
        engine.runaway = Runaway(
            config.runaway, store, stops=stops, audit=audit, fire=alerts.fire,
            customer_of=lambda key: limits.scopes_of(key)[1],
            rates=counters if isinstance(counters, SharedSpendRates) else None,
            lease_s=config.alerts.claim_lease_s,
        )  # fmt: skip
    collector = config.observability.agent_collector()
    agent_forward = AgentForwarder(config.observability.agent_telemetry, collector, client) if collector else None
    return Services(
        config, store, client, providers, keys, recorder, audit, export, mcp, limits, engine,
        profiles, identity, live=live, admin=admin, authenticators=authenticators,
        guard=guard, alerts=alerts, stops=stops, agent_forward=agent_forward,
    )  # fmt: skip


def deployment_models(config: SluiceConfig) -> dict[str, str]:
    """Azure deployment name -> the model it serves, so a caller naming a deployment is priced
    as its model."""
    out: dict[str, str] = {}
    for name, cfg in config.providers.items():
        if provider_type(name, cfg) == "azure":
            out.update({deployment: model for model, deployment in cfg.deployments.items()})
    return out
