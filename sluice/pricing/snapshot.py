"""Prices from the `genai-prices` database (pydantic/genai-prices, MIT), read from the snapshot
bundled with the installed package: no network, no background refresh.

genai-prices is released often and carries what a flat table cannot: long-context tiers,
1-hour cache writes, per-call prices (web search), service-tier variants, and each provider's
rules for matching the many spellings of a model name. Sluice uses its data and its matching,
and keeps its own arithmetic: the snapshot's Decimal rates become Sluice `Price` records once per
model, so a cost is exact integer pico-dollars and the hot path never runs the library's generic
calculator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import version

from genai_prices import data_snapshot
from genai_prices import types as gp

from sluice.pricing.rates import Price, Rate

# Sluice provider types (and OpenAI-compatible vendor names) -> genai-prices provider ids.
_PROVIDER_IDS = {
    "anthropic": "anthropic",
    "openai": "openai",
    "gemini": "google",
    "vertex": "google",
    "bedrock": "aws",
    "azure": "azure",
    "xai": "x-ai",
    "grok": "x-ai",
}
# Variant conditions Sluice can see on a request or an answer (batch processing never passes here).
_VARIANT_KEYS = ("service_tier", "speed")


def _rate(value: object, fallback: Rate | None) -> Rate | None:
    if isinstance(value, Decimal):
        return Rate(value)
    if isinstance(value, gp.TieredPrices):
        return Rate(value.base, tuple((tier.start, tier.price) for tier in value.tiers))
    return fallback


def _price(prices: gp.ModelPrice, source: str, standard: Price | None = None) -> Price | None:
    base = standard
    inp = _rate(prices.input_mtok, base.input if base else None)
    out = _rate(prices.output_mtok, base.output if base else None)
    if inp is None or out is None:
        return None  # priced by something other than tokens (images, audio seconds): not ours
    read = _rate(prices.cache_read_mtok, base.cache_read if base else inp)
    write = _rate(prices.cache_write_mtok, base.cache_write if base else inp)
    assert read is not None and write is not None
    write_1h = _rate(prices.cache_write_1h_mtok, base.cache_write_1h if base else write)
    assert write_1h is not None
    searches = prices.web_searches_kcount
    web_search = searches / 1000 if isinstance(searches, Decimal) else (base.web_search if base else Decimal(0))
    return Price(inp, out, read, write, write_1h, web_search, {}, source)


def _convert(model: gp.ModelInfo, provider: gp.Provider, now: datetime) -> Price | None:
    source = f"{provider.id}:{model.id}"
    standard = _price(model.get_prices(now), source)
    if standard is None:
        return None
    for variant in model.price_variants or ():
        if variant.constraint is not None and not variant.constraint.active(now):
            continue
        if len(variant.when) != 1:
            continue
        ((key, value),) = variant.when.items()
        if key not in _VARIANT_KEYS:
            continue
        priced = _price(variant.prices, f"{source}[{key}={value}]", standard)
        if priced is not None:
            standard.variants.setdefault(f"{key}={value}", priced)
    return standard


@dataclass(slots=True)
class Snapshot:
    """The bundled genai-prices data: provider-aware model matching, converted prices."""

    version: str
    providers: list[gp.Provider]
    _converted: dict[tuple[int, date], Price | None]

    @classmethod
    def bundled(cls) -> Snapshot:
        snap = data_snapshot.get_snapshot()
        return cls(f"genai-prices {version('genai-prices')}", snap.providers, {})

    def _provider(self, provider_id: str) -> gp.Provider | None:
        return next((p for p in self.providers if p.id == provider_id), None)

    def _order(self, name: str, vendor: str | None) -> list[gp.Provider]:
        """The hinted provider first (it knows its own ids: Bedrock profiles, Vertex versions),
        then every provider whose model-name rule claims the name."""
        order: list[gp.Provider] = []
        if vendor:
            hinted = self._provider(_PROVIDER_IDS.get(vendor, vendor))
            if hinted is not None:
                order.append(hinted)
        order.extend(p for p in self.providers if p.model_match is not None and p.model_match.is_match(name))
        unique: dict[str, gp.Provider] = {}
        for p in order:
            unique.setdefault(p.id, p)
        return list(unique.values())

    def find(self, name: str, vendor: str | None, day: date) -> Price | None:
        """The price in force on `day` (prices change on dates the data names)."""
        lowered = name.lower()
        if self._converted and next(iter(self._converted))[1] != day:
            self._converted.clear()  # a new day: prices may have changed; keep one day's records
        for provider in self._order(lowered, vendor):
            model = provider.find_model(lowered, all_providers=self.providers)
            if model is None:
                continue
            key = (id(model), day)
            if key not in self._converted:
                owner = next((p for p in self.providers if any(m is model for m in p.models)), provider)
                noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
                self._converted[key] = _convert(model, owner, noon)
            price = self._converted[key]
            if price is not None:
                return price
        return None
