"""What `sluice config validate` says about prices: models a budgeted key may call that nothing
prices, which are refused (403) while `pricing.unpriced` is `refuse`."""

from __future__ import annotations

from sluice.pricing.table import PriceTable
from sluice.settings import SluiceConfig, provider_type


def unpriced_warnings(config: SluiceConfig, table: PriceTable) -> list[str]:
    if table.unpriced_policy != "refuse":
        return []
    budgeted = {b.scope for b in config.budgets}
    team_customer = {t.id: t.customer_id for t in config.teams}
    out = []
    for vk in config.virtual_keys:
        customer = vk.customer_id or (team_customer.get(vk.team_id) if vk.team_id else None)
        scopes = {("virtual_key", vk.id), ("team", vk.team_id or ""), ("customer", customer or "")}
        if not scopes & budgeted:
            continue
        for access in vk.provider_configs:
            cfg = config.providers.get(access.provider)
            vendor = provider_type(access.provider, cfg) if cfg is not None else access.provider
            if vendor == "openai_compatible":
                vendor = access.provider
            for model in access.allowed_models:
                if "*" not in model and table.lookup(model, vendor) is None:
                    out.append(
                        f"virtual key {vk.id!r} has a dollar budget and may call {access.provider}/{model}, "
                        "which has no price: those requests are refused (403) until it is priced under "
                        "'pricing.overrides' (or 'pricing.unpriced' is set)"
                    )
    return out
