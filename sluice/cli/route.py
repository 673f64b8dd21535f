"""`sluice route explain`: which rules, aliases and providers a request would meet."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.admin.live import merged_config
from sluice.app import offline_limits, open_store
from sluice.core.errors import SluiceError
from sluice.governance.allowlist import allowed_candidates
from sluice.governance.config_sync import sync_from_file
from sluice.providers.registry import build_providers
from sluice.routing.router import RouteFacts, Router
from sluice.settings import SluiceConfig
from sluice.upstream.client import UpstreamClient


async def explain(config: SluiceConfig, store_url: str, key_id: str, model: str, headers: dict[str, str]) -> list[str]:
    store = open_store(store_url)
    try:
        await store.migrate()
        key = await store.key_by_id(key_id)
        if key is None:
            return [f"error: no virtual key {key_id!r} in the store {store_url}"]
        await sync_from_file(store, config, "route-explain")  # as a serving gateway would see it
        config = merged_config(config, await store.list_objects())  # with the store's routing and providers
        limits = offline_limits(config, store)
        await limits.reload()
        team, customer = limits.scopes_of(key)
        facts = RouteFacts(
            model,
            headers,
            key.id,
            key.name,
            team,
            customer,
            headers.get("user-agent", ""),
            headers.get("x-claude-code-session-id"),
            False,
            datetime.now(UTC),
        )
        seen: dict[str, float | int] = {}

        async def usage() -> tuple[float, int]:
            budget_used, tokens_used = await limits.usage(key)  # settled spend, from the ledger
            seen.update(budget_used=round(budget_used, 4), tokens_used=tokens_used)
            return budget_used, tokens_used

        route = await Router(config.routing).resolve(facts, usage)
        lines = [f"key:        {key.id} (team {team or '-'}, customer {customer or '-'})", f"requested:  {model}"]
        if seen:
            lines.append("state:      " + ", ".join(f"{k}={v}" for k, v in seen.items()))
        lines.append("steps:      " + (", ".join(route.steps) or "none (no rule or alias applies)"))
        lines.append(f"resolved:   {route.model}")
        providers = build_providers(config, UpstreamClient())
        targets = list(dict.fromkeys([route.model, *route.fallbacks, *key.fallbacks]))
        for n, target in enumerate(targets):
            label = "serves:    " if n == 0 else f"fallback {n}:"
            try:
                found = allowed_candidates(key, target, lambda p, m: p in providers and providers[p].serves(m))
            except SluiceError as err:
                lines.append(f"{label} {target}: refused: {err.message}")
                continue
            shown = ", ".join(f"{c.provider}/{c.model} (weight {c.weight:g})" for c in found)
            lines.append(f"{label} {target}: {shown}")
        return lines
    finally:
        await store.close()
