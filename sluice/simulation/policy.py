"""A proposed configuration made into the live path's own policy objects, over a replay's view
of the store.

The proposal is a config file, validated exactly as `sluice serve` validates one
(`parse_config`), and composed as a serving gateway composes it: its governance objects synced
over the live store's (`sync_from_file`, the file winning on equal ids), the store's providers
and routing laid over its own (`merged_config`), its virtual keys over the store's keys, access
profiles deriving keys (`ProfileBook`). What it builds is the live path's code, not a model of
it: `Limits` (on in-process counters and a simulated clock), `Router`, the engine's provider
choice (`plan`) and pricing (`PriceTable`, `Costs.price`).

Nothing a proposal says can make the replay reach out: no provider is ever called (the upstream
client is never started), the proposal's store, Redis, audit exporters, alert sinks, identity
providers, MCP servers and guardrails are not built, and every write the policy objects make
goes to the replay's view (`sluice.simulation.view`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from sluice.admin.live import merged_config
from sluice.app import deployment_models, key_from_config
from sluice.engine.cost import Costs
from sluice.engine.plan import has_credentials
from sluice.governance.config_sync import sync_from_file
from sluice.governance.limits import Limits
from sluice.governance.profiles import ProfileBook
from sluice.pricing.table import PriceTable
from sluice.providers.base import Provider
from sluice.providers.registry import build_providers
from sluice.routing.router import Router
from sluice.settings import ProviderKeyConfig, SluiceConfig, parse_config
from sluice.simulation.view import ReplayStore
from sluice.storage.backends.memory_counters import MemoryCounters
from sluice.storage.ports import Store
from sluice.storage.records import VirtualKey
from sluice.upstream.client import UpstreamClient

PLACEHOLDER_KEY = "simulated"  # a provider credential the proposal leaves to the environment


class SimulatedClock:
    """The replay's time: set to each request's timestamp before its policy runs."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


def parse_proposal(doc: Any, source: str = "proposal") -> SluiceConfig:
    """The proposal as a config; raises `ConfigError` with the same message a gateway would."""
    return parse_config(doc, source=source)


@dataclass
class Policy:
    """The live path's policy objects for one replay."""

    config: SluiceConfig  # the proposal composed with the store's objects
    view: ReplayStore
    clock: SimulatedClock
    keys: dict[str, VirtualKey]
    providers: dict[str, Provider]
    router: Router
    limits: Limits
    prices: PriceTable
    costs: Costs


async def build_policy(proposal: SluiceConfig, live: Store, start: datetime) -> Policy:
    view = ReplayStore(live, start)
    await view.load()
    await sync_from_file(view.as_store(), proposal, "policy-simulation")
    config = merged_config(proposal, await view.list_objects())
    providers = build_providers(config, UpstreamClient())  # never started: it cannot send
    missing = {name for name, provider in providers.items() if not has_credentials(provider)}
    if missing:
        config = _with_placeholder_credentials(config, missing)
        providers = build_providers(config, UpstreamClient())
    clock = SimulatedClock(start)
    # In-process counters and no spend journal, whatever the proposal's governance section says.
    governance = config.governance.model_copy(update={"backend": "memory", "spend_journal_path": os.devnull})
    limits = Limits(governance, MemoryCounters(), view.as_store(), clock=clock)
    await limits.reload()  # window anchors at the replay's start (the clock's time)
    profiles = ProfileBook(view.as_store())
    await profiles.reload()
    keys = {key.id: key for key in await view.list_keys()}
    for cfg in proposal.virtual_keys:  # the secret is irrelevant: requests are matched by key id
        keys[cfg.id] = key_from_config(cfg, PLACEHOLDER_KEY)
    keys = {key_id: profiles.derive(key) for key_id, key in keys.items()}
    prices = PriceTable.bundled(config.pricing, aliases=deployment_models(config))
    costs = Costs(prices, limits, config.governance.default_max_tokens, config.governance.stream_reservation == "block")
    return Policy(config, view, clock, keys, providers, Router(config.routing), limits, prices, costs)


def _with_placeholder_credentials(config: SluiceConfig, names: set[str]) -> SluiceConfig:
    """Providers whose keys come from environment variables not set where the simulation runs
    (the config loader drops those keys) are given a placeholder: credentials are not policy,
    and a real one is never needed since nothing is sent."""
    placeholder = [ProviderKeyConfig(name=PLACEHOLDER_KEY, value=SecretStr("-"))]
    providers = {
        name: cfg.model_copy(update={"keys": placeholder}) if name in names else cfg
        for name, cfg in config.providers.items()
    }
    return config.model_copy(update={"providers": providers})
