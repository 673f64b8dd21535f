"""Providers, routing and MCP tool groups from the store, rebuilt when the store changes.

The config file's `providers`, `routing` and `mcp` sections are the base; objects of the same
name in the store (made through the admin API or `sluice config apply`) replace them, and new
ones are added. Every replica follows the store's config version and rebuilds within a second;
the replica that made a change rebuilds before answering, so its next request sees it.

What is rebuilt is cheap and stateless (provider objects share the one upstream client; the
router is compiled CEL), so it is swapped whole, with no await between reads and the swap.
MCP servers are connected or closed after the swap (a connection takes time; until it is up, the
new server's tools are simply not listed).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import SecretStr

from sluice.admin.kinds import KINDS, McpServerSpec, ProviderKeySpec, ProviderSpec
from sluice.admin.secrets import unseal
from sluice.engine import Engine
from sluice.governance.refresh import Follower, VersionWatch
from sluice.mcp.gateway import McpGateway
from sluice.providers.base import Provider
from sluice.providers.registry import build_providers
from sluice.routing.router import Router
from sluice.settings import (
    AliasConfig,
    McpServerConfig,
    ProviderConfig,
    ProviderKeyConfig,
    RoutingRuleConfig,
    SluiceConfig,
    ToolGroupConfig,
)
from sluice.storage.ports import ConfigStore
from sluice.upstream.client import UpstreamClient

log = logging.getLogger("sluice.live")


def merged_config(base: SluiceConfig, objects: list[Any]) -> SluiceConfig:
    """The file's configuration with the store's providers, routing and MCP objects laid over it."""
    providers = dict(base.providers)
    keys: dict[str, list[ProviderKeyConfig]] = {}
    rules = {r.id: r for r in base.routing.rules}
    aliases = {(a.scope, a.alias): a for a in base.routing.aliases}
    groups = {g.name: g for g in base.mcp.tool_groups}
    servers = {s.name: s for s in base.mcp.servers}
    for obj in objects:
        kind = KINDS.get(obj.kind)
        if kind is None or obj.kind in ("team", "customer", "budget", "rate_limit", "access_profile"):
            continue
        try:
            model = kind.parse(obj.body)
        except ValueError:
            log.exception("stored %s %s is not valid; ignored", obj.kind, obj.id)
            continue
        if isinstance(model, ProviderSpec):
            fields = model.model_dump(exclude={"name"})
            fields["headers"] = {k: unseal(v) or "" for k, v in model.headers.items()}
            providers[model.name] = ProviderConfig(**fields, keys=providers.get(model.name, ProviderConfig()).keys)
        elif isinstance(model, ProviderKeySpec):
            value = unseal(model.value)
            if value is None:
                log.warning(
                    "provider key %s:%s has no usable value (unset env or wrong key)", model.provider, model.name
                )
                continue
            keys.setdefault(model.provider, []).append(
                ProviderKeyConfig(name=model.name, value=SecretStr(value), weight=model.weight)
            )
        elif isinstance(model, RoutingRuleConfig):
            rules[model.id] = model
        elif isinstance(model, AliasConfig):
            aliases[model.scope, model.alias] = model
        elif isinstance(model, ToolGroupConfig):
            groups[model.name] = model
        elif isinstance(model, McpServerSpec):
            servers[model.name] = _server_config(model)
    for name, found in keys.items():
        if name in providers:  # store keys replace the file's keys of that provider
            providers[name] = providers[name].model_copy(update={"keys": found})
    routing = base.routing.model_copy(update={"rules": list(rules.values()), "aliases": list(aliases.values())})
    mcp = base.mcp.model_copy(update={"servers": list(servers.values()), "tool_groups": list(groups.values())})
    return base.model_copy(update={"providers": providers, "routing": routing, "mcp": mcp})


def _server_config(spec: McpServerSpec) -> McpServerConfig:
    def plain(values: dict[str, str]) -> dict[str, SecretStr]:
        return {k: SecretStr(unseal(v) or "") for k, v in values.items()}

    fields = spec.model_dump(exclude={"env", "headers"})
    if spec.url is not None:
        fields["url"] = unseal(spec.url)  # sealed when it carries credentials
    return McpServerConfig(**fields, env=plain(spec.env), headers=plain(spec.headers))


class LiveConfig:
    def __init__(
        self,
        base: SluiceConfig,
        store: ConfigStore,
        engine: Engine,
        mcp: McpGateway,
        client: UpstreamClient,
        *,
        refresh_interval: float = 1.0,
        watch: VersionWatch | None = None,
    ) -> None:
        """`watch`: the `config_version` watch shared with the other followers of it."""
        self._base = base
        self._store = store
        self._engine = engine
        self._mcp = mcp
        self._client = client
        self.config = base
        self.providers: dict[str, Provider] = engine.providers
        self._follower = Follower("live-config", watch or store.config_version, self.rebuild, interval=refresh_interval)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    async def reload(self) -> None:
        await self._follower.load()

    async def rebuild(self) -> None:
        config = merged_config(self._base, await self._store.list_objects())
        providers = build_providers(config, self._client)
        router = Router(config.routing)
        # No await until the swap is done: a request sees either the old set or the new one.
        self._engine.reconfigure(providers, router, config.routing)
        self.providers = providers
        self.config = config
        # Groups and grants apply to the next MCP request; changed servers restart lazily, and
        # live sessions whose view changed are told.
        await self._mcp.reload(config.mcp)

    async def rebase(self, base: SluiceConfig) -> None:
        """A re-read config file becomes the base the store's objects are laid over."""
        self._base = base
        await self.rebuild()
